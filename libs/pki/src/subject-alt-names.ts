/** One entry of a certificate's subjectAltName, e.g. { type: 'DNS', value: 'game-client' }. */
export interface SubjectAltName {
  type: string;
  value: string;
}

/**
 * Parses Node's `X509Certificate.subjectAltName` text ("DNS:a, URI:shoal://f/agent/x, IP
 * Address:127.0.0.1"). Node prints a value that holds a comma, quote or other unsafe character
 * as a JSON string literal (since the CVE-2021-44532 fix), so an unquoted value never contains
 * ", " and a quoted one is decoded with JSON.parse. Returns undefined for text it cannot split
 * unambiguously, so that no hostile encoding can be misread as a name.
 */
export function parseSubjectAltNames(text: string | undefined): SubjectAltName[] | undefined {
  const entries: SubjectAltName[] = [];
  if (text === undefined || text === '') return entries;
  let position = 0;
  for (;;) {
    const colon = text.indexOf(':', position);
    if (colon < 0) return undefined;
    const type = text.slice(position, colon);
    let value: string;
    let end: number;
    if (text[colon + 1] === '"') {
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      if (end >= text.length) return undefined;
      end += 1;
      try {
        value = JSON.parse(text.slice(colon + 1, end)) as string;
      } catch {
        return undefined;
      }
    } else {
      const separator = text.indexOf(', ', colon + 1);
      end = separator < 0 ? text.length : separator;
      value = text.slice(colon + 1, end);
      // Node would have quoted either character; seeing one bare means the text is not what we think.
      if (/[,"]/.test(value)) return undefined;
    }
    entries.push({ type, value });
    if (end === text.length) return entries;
    if (!text.startsWith(', ', end)) return undefined;
    position = end + 2;
  }
}
