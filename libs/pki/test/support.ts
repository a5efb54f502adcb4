import { execFileSync } from 'node:child_process';
import { ShoalError } from '@shoal/torrent';
import forge from 'node-forge';
import { PkiError, type PkiErrorCode } from '../src';

/** Runs `action`, which must throw a PkiError (hence a ShoalError) with `code`; returns it. */
export function expectPkiError(action: () => unknown, code: PkiErrorCode): PkiError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ShoalError);
    expect(error).toBeInstanceOf(PkiError);
    expect((error as PkiError).code).toBe(code);
    return error as PkiError;
  }
  throw new Error(`expected ${code}, but nothing was thrown`);
}

/** A P-256 key and something made with it by the openssl command line (`args` after the key options). */
export function opensslWithEcKey(args: string[]): string {
  return execFileSync(
    'openssl',
    ['req', ...args, '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null', '-subj', '/CN=x'],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

/** Extensions of a certificate as node-forge reads them, by name. */
export function extensionsOf(certPem: string): Map<string, Record<string, unknown>> {
  const certificate = forge.pki.certificateFromPem(certPem);
  return new Map((certificate.extensions as Record<string, unknown>[]).map((extension) => [String(extension['name']), extension]));
}

/** The keyIdentifier inside an authorityKeyIdentifier extension value, as hex. */
export function authorityKeyIdentifierHex(extension: Record<string, unknown>): string {
  const sequence = forge.asn1.fromDer(String(extension['value']));
  const [keyIdentifier] = sequence.value as forge.asn1.Asn1[];
  expect(keyIdentifier?.tagClass).toBe(forge.asn1.Class.CONTEXT_SPECIFIC);
  return forge.util.bytesToHex(String(keyIdentifier?.value));
}

export const SECOND = 1000;
export const DAY = 86_400 * SECOND;
