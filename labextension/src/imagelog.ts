// An image's build log in a dialog; while the image is building the dialog follows the log.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { errorMessage, fetchImageLog } from './api';
import type { ImageInfo } from './types';

class ImageLogBody extends Widget {
  constructor(image: ImageInfo) {
    super();
    this.addClass('nbmodal-image-log');
    this._pre = document.createElement('pre');
    this._pre.textContent = image.error || 'Loading…';
    this.node.appendChild(this._pre);
    this._poll = new Poll({
      factory: async () => {
        try {
          this._show(await fetchImageLog(image.host, image.image_id));
        } catch (error) {
          this._show(`Could not read the log: ${errorMessage(error)}`);
          throw error;
        }
      },
      // A finished build's log doesn't change: read it once.
      frequency: { interval: image.state === 'building' ? 1500 : Poll.NEVER, backoff: true },
      standby: 'when-hidden',
      name: `nbmodal:image-log:${image.image_id}`
    });
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  private _show(text: string): void {
    const pre = this._pre;
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = text || '(empty log)';
    if (atBottom) {
      pre.scrollTop = pre.scrollHeight;
    }
  }

  private _pre: HTMLPreElement;
  private _poll: Poll;
}

export function showImageLog(image: ImageInfo): void {
  // The dialog disposes its body when it closes, which stops the poll.
  void showDialog({
    title: `Image ${image.name} (${image.state}) on ${image.host}`,
    body: new ImageLogBody(image),
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
}
