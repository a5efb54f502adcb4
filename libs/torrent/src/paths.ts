import { MetainfoError } from './errors';

/**
 * Path rules for names that arrive in metainfo (hostile input). A package may only describe
 * files inside its own folder, on every platform we unpack on.
 */
export const MAX_COMPONENT_BYTES = 255;
export const MAX_PATH_DEPTH = 32;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Decodes a path component given as raw bytes (a bencode key), throwing on anything unsafe. */
export function decodeComponent(raw: Uint8Array, where: string): string {
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    throw new MetainfoError('METAINFO_UNSAFE_PATH', 'path component is not valid UTF-8', where);
  }
  checkComponent(text, where);
  return text;
}

export function checkComponent(text: string, where: string): void {
  const unsafe = (why: string): never => {
    throw new MetainfoError('METAINFO_UNSAFE_PATH', `path component ${JSON.stringify(text)} ${why}`, where);
  };
  if (text.length === 0) unsafe('is empty');
  if (text === '.' || text === '..') unsafe('is a relative reference');
  if (/[/\\]/.test(text)) unsafe('contains a path separator');
  // NUL truncates paths in C APIs; other control characters forge terminal and log output.
  if (/[\u0000-\u001f\u007f]/.test(text)) unsafe('contains a control character');
  if (/^[A-Za-z]:/.test(text)) unsafe('names a drive');
  if (Buffer.byteLength(text, 'utf8') > MAX_COMPONENT_BYTES) unsafe(`is longer than ${MAX_COMPONENT_BYTES} bytes`);
}

/**
 * The form two names share when a filesystem would treat them as one: Unicode compatibility
 * normalisation (macOS stores NFD, Linux keeps bytes) and case folding (Windows, macOS).
 */
export function collisionKey(name: string): string {
  // Fold until stable: case mapping can leave a string denormalised (U+1FD2 upper-cases to code
  // points NFKC recomposes differently), and one fold is not idempotent (U+1E9E folds to U+00DF,
  // which folds to "ss"). Two passes reach the fixpoint; the bound keeps any input from looping.
  let key = name;
  for (let pass = 0; pass < 4; pass++) {
    const next = key.normalize('NFKC').toUpperCase().toLowerCase().normalize('NFKC');
    if (next === key) break;
    key = next;
  }
  return key;
}

/** Tracks the names seen in one directory and rejects a second name that folds to the same key. */
export class SiblingNames {
  private readonly seen = new Map<string, string>();

  add(name: string, where: string): void {
    const key = collisionKey(name);
    const other = this.seen.get(key);
    if (other !== undefined) {
      throw new MetainfoError(
        'METAINFO_PATH_COLLISION',
        `${JSON.stringify(name)} and ${JSON.stringify(other)} name the same file after Unicode and case normalisation`,
        where,
      );
    }
    this.seen.set(key, name);
  }
}
