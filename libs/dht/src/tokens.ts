import { createHmac, timingSafeEqual } from 'node:crypto';
import type { NodeId } from './node-id';
import type { RandomBytes } from './random';

const SECRET_BYTES = 32;
export const TOKEN_BYTES = 8;

/**
 * Write tokens (BEP 5): get_peers hands one out, announce_peer must bring it back. A token is an
 * HMAC of the requester's node id and IP under a secret that rotates every `rotationMs`; the
 * current and the previous secret are accepted, so a token lives between one and two rotations
 * (5 to 10 minutes by default). Binding the node id as well as the IP means one fleet host cannot
 * announce with a token handed to another host behind the same NAT.
 */
export class TokenIssuer {
  private current: Buffer;
  private previous: Buffer;
  private rotatedAt: number;

  constructor(
    private readonly randomBytes: RandomBytes,
    private readonly rotationMs: number,
    now: number,
  ) {
    this.current = randomBytes(SECRET_BYTES);
    // No token was issued under it: a fresh secret nobody knows.
    this.previous = randomBytes(SECRET_BYTES);
    this.rotatedAt = now;
  }

  issue(now: number, requester: NodeId, address: string): Buffer {
    this.rotate(now);
    return tokenOf(this.current, requester, address);
  }

  valid(now: number, token: Uint8Array, requester: NodeId, address: string): boolean {
    this.rotate(now);
    if (token.length !== TOKEN_BYTES) return false;
    return timingSafeEqual(token, tokenOf(this.current, requester, address)) || timingSafeEqual(token, tokenOf(this.previous, requester, address));
  }

  private rotate(now: number): void {
    const elapsed = now - this.rotatedAt;
    if (elapsed < this.rotationMs) return;
    // After two rotation periods of silence both secrets are stale.
    this.previous = elapsed >= 2 * this.rotationMs ? this.randomBytes(SECRET_BYTES) : this.current;
    this.current = this.randomBytes(SECRET_BYTES);
    this.rotatedAt = now - (elapsed % this.rotationMs);
  }
}

function tokenOf(secret: Buffer, requester: NodeId, address: string): Buffer {
  return createHmac('sha256', secret).update(requester).update(address, 'latin1').digest().subarray(0, TOKEN_BYTES);
}
