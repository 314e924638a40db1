"""The container process: runs cells and functions sent by the agent.

A container is a plain Python process started by the agent with one end of a
private socket pair. It executes one run at a time on its main thread (so
SIGINT becomes a KeyboardInterrupt in the user's code), and streams file
descriptors 1 and 2, displays and the result back over that socket.
"""
