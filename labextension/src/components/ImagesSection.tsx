// Images: name, build state, size, last use; a build log for building/failed ones; rebuild, delete.
import * as React from 'react';

import { useActions } from '../actions';
import { formatAge, formatBytes, shortId } from '../format';
import type { ImageInfo } from '../types';
import { StateBadge } from './Bar';
import { Empty, Section } from './Section';

const ImageRow = React.memo(function ImageRow({
  image,
  now
}: {
  image: ImageInfo;
  now: number;
}): JSX.Element {
  const actions = useActions();
  const [busy, setBusy] = React.useState(false);
  const run = (action: () => Promise<void>) => async (): Promise<void> => {
    setBusy(true);
    try {
      await action();
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="nbmodal-row nbmodal-image" data-image={image.image_id} data-host={image.host}>
      <div className="nbmodal-row-main">
        <StateBadge state={image.state} className="nbmodal-image-state" />
        <span className="nbmodal-name nbmodal-ellipsis" title={`${image.name} (${image.image_id})`}>
          {image.name || shortId(image.image_id)}
        </span>
        <span className="nbmodal-muted nbmodal-right">{formatBytes(image.size_bytes)}</span>
      </div>
      <div className="nbmodal-details">
        <span>{image.host}</span>
        {image.python && <span>Python {image.python}</span>}
        <span title="last used">used {formatAge(now, image.last_used)}</span>
      </div>
      {image.state === 'failed' && image.error && (
        <div className="nbmodal-host-error" title={image.error}>
          {image.error}
        </div>
      )}
      <div className="nbmodal-actions">
        {image.state !== 'ready' && (
          <button className="nbmodal-log-button jp-mod-styled" onClick={() => actions.showImageLog(image)}>
            Log
          </button>
        )}
        <button
          className="nbmodal-rebuild jp-mod-styled"
          disabled={busy || image.state === 'building'}
          onClick={run(() => actions.rebuildImage(image))}
        >
          Rebuild
        </button>
        <button
          className="nbmodal-delete jp-mod-styled"
          disabled={busy}
          onClick={run(() => actions.deleteImage(image))}
        >
          Delete
        </button>
      </div>
    </div>
  );
});

export const ImagesSection = React.memo(function ImagesSection({
  images,
  now
}: {
  images: ImageInfo[];
  now: number;
}): JSX.Element {
  return (
    <Section id="images" title="Images" count={images.length}>
      {images.length === 0 ? (
        <Empty>No images.</Empty>
      ) : (
        images.map(image => (
          <ImageRow key={`${image.host}/${image.image_id}`} image={image} now={now} />
        ))
      )}
    </Section>
  );
});
