// The sidebar's tab icon: three stacked hosts. `jp-icon3` lets the theme recolor it.
import { LabIcon } from '@jupyterlab/ui-components';

const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M4 3h16a1 1 0 0 1 1 1v4a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1zm2 2.5v1h2v-1H6z"/>
    <path d="M4 10h16a1 1 0 0 1 1 1v2a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1v-2a1 1 0 0 1 1-1zm2 1.5v1h2v-1H6z"/>
    <path d="M4 15h16a1 1 0 0 1 1 1v4a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1v-4a1 1 0 0 1 1-1zm2 2.5v1h2v-1H6z"/>
  </g>
</svg>`;

export const nbmodalIcon = new LabIcon({ name: 'nbmodal:sidebar', svgstr });
