import { describe, expect, it } from 'vitest';

import { parseRunHref } from '../reveal';

describe('parseRunHref', () => {
  it('reads host and run id', () => {
    expect(parseRunHref('#nbmodal-run:gpu1:ab12')).toEqual({ host: 'gpu1', run_id: 'ab12' });
  });

  it('decodes each part and allows an empty host', () => {
    expect(parseRunHref('#nbmodal-run:my%3Ahost:r%2F1')).toEqual({ host: 'my:host', run_id: 'r/1' });
    expect(parseRunHref('#nbmodal-run::r1')).toEqual({ host: '', run_id: 'r1' });
  });

  it('rejects other or malformed links', () => {
    expect(parseRunHref('https://example.com')).toBeNull();
    expect(parseRunHref('#nbmodal-run:onlyhost')).toBeNull();
    expect(parseRunHref('#nbmodal-run:h:')).toBeNull();
    expect(parseRunHref('#nbmodal-run:a:b:c')).toBeNull();
    expect(parseRunHref('#nbmodal-run:%E0:r')).toBeNull();
    expect(parseRunHref(null)).toBeNull();
  });
});
