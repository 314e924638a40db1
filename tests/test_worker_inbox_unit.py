"""The container's inbox (remote_agent/worker/inbox.py): frames read by the idle main thread itself or by the
reader thread while the main thread is busy, whole and in order, with or without EPOLLEXCLUSIVE."""

from __future__ import annotations

import socket
import threading

import pytest

from nbmodal_wire import pb
from nbmodal_wire.frames import FrameSocket
from remote_agent.worker import inbox as inbox_module
from remote_agent.worker.inbox import Inbox

pytestmark = pytest.mark.unit

WAIT_S = 10.0


@pytest.fixture(params=["exclusive", "reader-only"])
def pair(request, monkeypatch):
    """(agent's end, the container's Inbox, the frames handled by the reader's handlers)."""
    if request.param == "reader-only":  # a kernel without EPOLLEXCLUSIVE: the thread reads every frame
        monkeypatch.setattr(inbox_module, "_exclusive_poll", lambda sock: None)
    agent_end, container_end = socket.socketpair()
    inbox = Inbox(container_end)
    handled: list[pb.ToContainer] = []
    changed = threading.Condition()

    def on_answer(message: pb.ToContainer) -> None:
        with changed:
            handled.append(message)
            changed.notify_all()

    inbox.on("input_answer", on_answer)
    inbox.start()
    yield agent_end, inbox, handled, changed
    agent_end.close()
    while inbox.next_for_main() is not None:  # the inbox has seen the end: its thread leaves
        pass
    container_end.close()


def execute(run_id: str, payload: bytes = b"") -> pb.ToContainer:
    return pb.ToContainer(execute=pb.Execute(run_id=run_id, payload=payload))


def answer(text: str) -> pb.ToContainer:
    return pb.ToContainer(input_answer=pb.InputAnswer(text=text))


def frame(message: pb.ToContainer) -> bytes:
    body = message.SerializeToString()
    return len(body).to_bytes(4, "little") + body


def wait_for(changed: threading.Condition, handled: list, count: int) -> None:
    with changed:
        assert changed.wait_for(lambda: len(handled) >= count, timeout=WAIT_S), handled


def test_frames_sent_together_come_whole_and_in_order(pair) -> None:
    agent_end, inbox, handled, changed = pair
    agent_end.sendall(frame(execute("r-1")) + frame(answer("a")) + frame(execute("r-2")) + frame(answer("b")))
    assert inbox.next_for_main().execute.run_id == "r-1"
    assert inbox.next_for_main().execute.run_id == "r-2"
    wait_for(changed, handled, 2)
    assert [m.input_answer.text for m in handled] == ["a", "b"]


def test_a_large_frame_and_one_sent_in_pieces_arrive_whole(pair) -> None:
    agent_end, inbox, _, _ = pair
    big = bytes(range(256)) * 4096  # 1 MiB: many reads
    FrameSocket(agent_end).send(execute("r-big", big))
    message = inbox.next_for_main()
    assert message.execute.run_id == "r-big" and message.execute.payload == big
    data = frame(execute("r-pieces", b"xyz" * 100))
    agent_end.sendall(data[:2])  # not even a whole header yet

    def rest() -> None:
        agent_end.sendall(data[2:40])
        agent_end.sendall(data[40:])

    sender = threading.Thread(target=rest)
    sender.start()
    assert inbox.next_for_main().execute.payload == b"xyz" * 100
    sender.join(WAIT_S)


def test_frames_that_come_while_the_main_thread_is_busy_are_handled_or_queued(pair) -> None:
    agent_end, inbox, handled, changed = pair
    inbox.busy = True  # the main thread runs user code: nobody calls next_for_main
    FrameSocket(agent_end).send(answer("during the run"))
    wait_for(changed, handled, 1)  # the reader thread handled it
    FrameSocket(agent_end).send(execute("r-next"))  # queued, and the main thread woken when it next waits
    inbox.busy = False
    assert inbox.next_for_main().execute.run_id == "r-next"


def test_the_agent_closing_the_socket_ends_the_main_loop(pair) -> None:
    agent_end, inbox, _, _ = pair
    FrameSocket(agent_end).send(execute("r-last"))
    assert inbox.next_for_main().execute.run_id == "r-last"
    agent_end.close()
    assert inbox.next_for_main() is None
    assert inbox.next_for_main() is None


def test_a_failing_handler_does_not_stop_the_frames_after_it(pair) -> None:
    agent_end, inbox, handled, changed = pair

    def broken(message: pb.ToContainer) -> None:
        raise ValueError("a bad frame")

    inbox.on("exec", broken)
    agent_end.sendall(frame(pb.ToContainer(exec=pb.ExecToContainer(exec_id="x"))) + frame(answer("still")))
    agent_end.sendall(frame(execute("r-after")))
    assert inbox.next_for_main().execute.run_id == "r-after"
    wait_for(changed, handled, 1)
