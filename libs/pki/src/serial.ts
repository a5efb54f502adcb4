import { randomBytes } from 'node:crypto';

/** Bytes of a certificate serial number: 128 bits, within RFC 5280's limit of 20 octets. */
export const SERIAL_BYTES = 16;

/**
 * A fresh certificate serial number. Serials are random rather than counted so that no store has
 * to be consulted to keep them unique, and so that they cannot be predicted (CA/B Forum asks for
 * at least 64 random bits). The top bit is forced to 1, which leaves 127 random bits and makes
 * every serial a positive 128-bit integer of exactly 32 hex digits.
 *
 * `serial` is the format of the whole library: lowercase hex with no sign byte, which is what
 * Node prints (`X509Certificate.serialNumber`, `TLSSocket.getPeerCertificate().serialNumber`)
 * after lowercasing. `forgeSerialNumber` is what node-forge writes as the DER INTEGER content,
 * so it carries the 00 byte that keeps a set top bit from reading as a negative number.
 */
export function randomSerialNumber(): { serial: string; forgeSerialNumber: string } {
  const bytes = randomBytes(SERIAL_BYTES);
  bytes.writeUInt8(bytes.readUInt8(0) | 0x80, 0);
  const serial = bytes.toString('hex');
  return { serial, forgeSerialNumber: `00${serial}` };
}
