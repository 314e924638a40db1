// Runs, newest first: state, label, host, duration. A click opens the run's log; only the first
// PAGE rows are rendered (a long-lived agent keeps hundreds) until "show more".
import * as React from 'react';

import { useActions } from '../actions';
import { formatDuration, shortId } from '../format';
import type { RevealedRun } from '../model';
import { runKey } from '../state';
import { FINAL_RUN_STATES, RunInfo } from '../types';
import { Empty, Section } from './Section';

export const RUNS_PAGE = 50;

const RunRow = React.memo(function RunRow({
  run,
  revealSeq
}: {
  run: RunInfo;
  /** Non-zero only on the revealed row; a new value scrolls it into view again. */
  revealSeq: number;
}): JSX.Element {
  const actions = useActions();
  const ref = React.useRef<HTMLDivElement>(null);
  const [stopping, setStopping] = React.useState(false);
  const final = FINAL_RUN_STATES.has(run.state);
  React.useEffect(() => {
    if (revealSeq && ref.current) {
      ref.current.scrollIntoView({ block: 'nearest' });
    }
  }, [revealSeq]);
  const stop = async (event: React.MouseEvent): Promise<void> => {
    event.stopPropagation(); // the row's own click opens the log
    setStopping(true);
    try {
      await actions.stopRun(run.host, run.run_id);
    } finally {
      setStopping(false);
    }
  };
  const open = (): void => actions.openRunLog(run.host, run.run_id);
  return (
    <div
      ref={ref}
      className={`nbmodal-row nbmodal-run${revealSeq ? ' nbmodal-highlight' : ''}`}
      data-run-id={run.run_id}
      data-host={run.host}
      data-final={final}
      role="button"
      tabIndex={0}
      title={`${run.run_id} — open its log`}
      onClick={open}
      onKeyDown={event => {
        if (event.key === 'Enter') {
          open();
        }
      }}
    >
      <div className="nbmodal-row-main">
        <span className="nbmodal-badge nbmodal-run-state" data-state={run.state}>
          {run.state}
        </span>
        <span className="nbmodal-name nbmodal-ellipsis">{run.label || shortId(run.run_id)}</span>
        <button
          className="nbmodal-stop jp-mod-styled"
          title="Stop this run"
          disabled={final || stopping}
          onClick={stop}
        >
          Stop
        </button>
      </div>
      <div className="nbmodal-details">
        <span>{run.host}</span>
        {run.members ? (
          <span
            className="nbmodal-run-members"
            title={run.members
              .map(m => `rank ${m.rank}: ${m.host} ${m.run_id} ${m.state}`)
              .join('\n')}
          >
            {run.members.length} nodes
          </span>
        ) : null}
        <span>{shortId(run.run_id)}</span>
        <span title="duration">{run.started ? formatDuration(run.duration_s) : 'not started'}</span>
      </div>
    </div>
  );
});

export const RunsSection = React.memo(function RunsSection({
  runs,
  revealed
}: {
  runs: RunInfo[];
  revealed: RevealedRun | null;
}): JSX.Element {
  const [limit, setLimit] = React.useState(RUNS_PAGE);
  const revealedKey = revealed ? runKey(revealed.host, revealed.run_id) : '';
  const revealedIndex = revealed ? runs.findIndex(r => runKey(r.host, r.run_id) === revealedKey) : -1;
  // A revealed run past the page must be rendered to be scrolled to.
  const shown = Math.max(limit, revealedIndex + 1);
  const running = runs.filter(r => !FINAL_RUN_STATES.has(r.state)).length;
  return (
    <Section id="runs" title={running ? `Runs (${running} active)` : 'Runs'} count={runs.length} openSignal={revealed?.seq}>
      {runs.length === 0 ? (
        <Empty>No runs yet.</Empty>
      ) : (
        <>
          {runs.slice(0, shown).map(run => {
            const key = runKey(run.host, run.run_id);
            return (
              <RunRow key={key} run={run} revealSeq={key === revealedKey ? revealed!.seq : 0} />
            );
          })}
          {runs.length > shown && (
            <button
              className="nbmodal-more jp-mod-styled"
              onClick={() => setLimit(shown + RUNS_PAGE)}
            >
              Show more ({runs.length - shown} older)
            </button>
          )}
        </>
      )}
    </Section>
  );
});
