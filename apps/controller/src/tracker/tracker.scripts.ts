import { createHash } from 'node:crypto';

/**
 * One announce, atomically, in one round trip.
 *
 * KEYS: 1 peers ZSET (agentId -> expiry ms), 2 records HASH (agentId -> JSON), 3 seeds ZSET
 * ARGV: 1 now ms, 2 expiry ms, 3 ttl ms, 4 agentId, 5 record JSON, 6 seed '1'|'0',
 *       7 stopped '1'|'0', 8 prune limit
 * Returns {live peers, live seeds} after the write.
 *
 * Expired members are pruned first, at most `prune limit` per call (bounded work, amortised
 * over announces). Every key gets PEXPIRE ttl on a live announce, so a swarm whose last peer
 * went silent vanishes by itself; Redis also deletes a ZSET or HASH once it is empty.
 */
export const ANNOUNCE_LUA = `
local now = ARGV[1]
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
if #dead > 0 then
  redis.call('ZREM', KEYS[1], unpack(dead))
  redis.call('HDEL', KEYS[2], unpack(dead))
  redis.call('ZREM', KEYS[3], unpack(dead))
end
local id = ARGV[4]
if ARGV[7] == '1' then
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
else
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  redis.call('HSET', KEYS[2], id, ARGV[5])
  if ARGV[6] == '1' then
    redis.call('ZADD', KEYS[3], ARGV[2], id)
  else
    redis.call('ZREM', KEYS[3], id)
  end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return {redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf'), redis.call('ZCOUNT', KEYS[3], '(' .. now, '+inf')}
`;

export const ANNOUNCE_SHA = createHash('sha1').update(ANNOUNCE_LUA).digest('hex');
