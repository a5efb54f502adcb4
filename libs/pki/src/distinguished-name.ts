import forge from 'node-forge';
import { PkiInputError } from './errors';
import { describeValue } from './names';

// X.520 ub-common-name.
const MAX_COMMON_NAME_LENGTH = 64;

/**
 * A subject holding one commonName, encoded as UTF8String: node-forge's default,
 * PrintableString, cannot hold characters such as '_', '@' or ':' and forge would not notice.
 */
export function commonNameSubject(commonName: unknown): forge.pki.CertificateField[] {
  if (
    typeof commonName !== 'string' ||
    commonName.length === 0 ||
    commonName.length > MAX_COMMON_NAME_LENGTH ||
    /[\x00-\x1f\x7f]/.test(commonName)
  ) {
    throw new PkiInputError(
      'PKI_INVALID_ARGUMENT',
      `commonName must be 1..${MAX_COMMON_NAME_LENGTH} characters, no control characters; got ${describeValue(commonName)}`,
    );
  }
  // @types/node-forge types valueTagClass as asn1.Class, but forge reads it as the asn1.Type of the value.
  return [{ name: 'commonName', value: commonName, valueTagClass: forge.asn1.Type.UTF8 as unknown as forge.asn1.Class }];
}

/**
 * The CA's subject as node-forge must be given it to write the issuer of a new certificate.
 * forge parses a UTF8String attribute to its raw bytes but encodes one from text, so those values
 * are decoded first. Returns undefined when the re-encoded name would differ from the CA's by
 * even a byte (other string types, multi-valued RDNs): issued certificates would then name an
 * issuer that does not exist and no chain would verify.
 */
export function issuerNameOf(caCertificate: forge.pki.Certificate): forge.pki.CertificateField[] | undefined {
  try {
    const attributes = caCertificate.subject.attributes.map((attribute) =>
      (attribute.valueTagClass as unknown) === forge.asn1.Type.UTF8 && typeof attribute.value === 'string'
        ? { ...attribute, value: forge.util.decodeUtf8(attribute.value) }
        : attribute,
    );
    // forge keeps the SHA-1 of the subject bytes as parsed: compare the re-encoding against it.
    const reencoded = forge.asn1.toDer(forge.pki.distinguishedNameToAsn1({ attributes })).getBytes();
    return forge.md.sha1.create().update(reencoded).digest().toHex() === caCertificate.subject.hash ? attributes : undefined;
  } catch {
    return undefined;
  }
}
