import { ShoalError } from '@shoal/torrent';

/** Label rules (Kubernetes-like): small, printable, safe in logs, URLs and selectors. */
export const MAX_LABELS = 16;
const LABEL_KEY = /^[a-z0-9](?:[a-z0-9._/-]{0,62})$/;
const LABEL_VALUE = /^[A-Za-z0-9._-]{0,63}$/;

export function checkLabels(labels: unknown, where = 'labels'): Record<string, string> {
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) {
    throw new ShoalError('LABELS_INVALID', `${where} must be an object of string values`);
  }
  const entries = Object.entries(labels as Record<string, unknown>);
  if (entries.length > MAX_LABELS) throw new ShoalError('LABELS_INVALID', `${where}: at most ${MAX_LABELS} labels`);
  for (const [key, value] of entries) {
    if (!LABEL_KEY.test(key)) throw new ShoalError('LABELS_INVALID', `${where}: key ${JSON.stringify(key)} must match ${LABEL_KEY}`);
    if (typeof value !== 'string' || !LABEL_VALUE.test(value)) {
      throw new ShoalError('LABELS_INVALID', `${where}.${key}: value must match ${LABEL_VALUE}`);
    }
  }
  return Object.fromEntries(entries) as Record<string, string>;
}

/** Agent ids: DNS-label-like, so they fit a certificate CN and a SAN URI path. */
export const AGENT_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
