// Endpoints: ports served from containers (nbmodal.forward, web endpoints), each a link through the
// Jupyter server's proxy that opens in a JupyterLab tab (or, middle-clicked, a browser tab).
import * as React from 'react';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { useActions } from '../actions';
import { shortId } from '../format';
import type { EndpointInfo } from '../types';
import { StateBadge } from './Bar';
import { Empty, Section } from './Section';

/** The endpoint's URL: its path under the Jupyter server's base URL (same origin as JupyterLab). */
export function endpointUrl(endpoint: EndpointInfo, baseUrl: string): string {
  return URLExt.join(baseUrl, endpoint.path);
}

const EndpointRow = React.memo(function EndpointRow({ endpoint }: { endpoint: EndpointInfo }): JSX.Element {
  const actions = useActions();
  const url = endpointUrl(endpoint, ServerConnection.makeSettings().baseUrl);
  const title = endpoint.label || endpoint.name;
  const open = (event: React.MouseEvent): void => {
    if (actions.openEndpoint && !event.ctrlKey && !event.metaKey && !event.shiftKey && event.button === 0) {
      event.preventDefault();
      actions.openEndpoint(url, title);
    }
  };
  return (
    <div
      className="nbmodal-row nbmodal-endpoint"
      data-endpoint={endpoint.name}
      data-host={endpoint.host}
      data-state={endpoint.state}
    >
      <div className="nbmodal-row-main">
        <StateBadge state={endpoint.state} />
        {endpoint.state === 'serving' ? (
          <a
            className="nbmodal-name nbmodal-ellipsis nbmodal-endpoint-link"
            href={url}
            target="_blank"
            rel="noopener noreferrer"
            title={url}
            onClick={open}
          >
            {title}
          </a>
        ) : (
          <span className="nbmodal-name nbmodal-ellipsis" title={endpoint.ended}>
            {title}
          </span>
        )}
      </div>
      <div className="nbmodal-details">
        <span>{endpoint.host}</span>
        <span>{endpoint.container_id}</span>
        <span title={endpoint.run_id}>run {shortId(endpoint.run_id)}</span>
        <span title={endpoint.kind}>port {endpoint.port}</span>
      </div>
    </div>
  );
});

export const EndpointsSection = React.memo(function EndpointsSection({
  endpoints
}: {
  endpoints: EndpointInfo[];
}): JSX.Element {
  const serving = endpoints.filter(e => e.state === 'serving').length;
  return (
    <Section id="endpoints" title="Endpoints" count={serving}>
      {endpoints.length === 0 ? (
        <Empty>No web UIs served (nbmodal.forward, @web_server, @asgi_app, @fastapi_endpoint…)</Empty>
      ) : (
        endpoints.map(e => <EndpointRow key={`${e.host}/${e.tunnel_id}`} endpoint={e} />)
      )}
    </Section>
  );
});
