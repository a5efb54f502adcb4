import { createHash } from 'node:crypto';

/**
 * A batch of announces, of any number of swarms, atomically, in one call.
 *
 * KEYS: three per swarm, in order: peers ZSET (agentId -> expiry ms), records HASH
 *       (agentId -> JSON), seeds ZSET (agentId -> expiry ms)
 * ARGV: 1 now ms, 2 ttl ms, 3 prune limit, then five per announce, in arrival order:
 *       swarm index (0-based, into the key triples), agentId, expiry ms, record JSON,
 *       kind ('s' seed, 'l' leech, 'x' stopped)
 * Returns, per swarm: live peers, live seeds, after all the writes.
 *
 * Expired members are pruned first, at most `prune limit` per swarm and call (bounded work,
 * amortised over announces). Every key of a swarm with a live announce gets PEXPIRE ttl, so a
 * swarm whose last peer went silent vanishes by itself; Redis also deletes a ZSET or HASH once it
 * is empty. The keys of several swarms lie in different cluster slots: this is for one Redis.
 */
export const ANNOUNCE_BATCH_LUA = `
local now = ARGV[1]
local ttl = ARGV[2]
local limit = tonumber(ARGV[3])
local swarms = #KEYS / 3
for s = 0, swarms - 1 do
  local dead = redis.call('ZRANGEBYSCORE', KEYS[3 * s + 1], '-inf', now, 'LIMIT', 0, limit)
  if #dead > 0 then
    redis.call('ZREM', KEYS[3 * s + 1], unpack(dead))
    redis.call('HDEL', KEYS[3 * s + 2], unpack(dead))
    redis.call('ZREM', KEYS[3 * s + 3], unpack(dead))
  end
end
local live = {}
for i = 4, #ARGV, 5 do
  local base = 3 * tonumber(ARGV[i])
  local id = ARGV[i + 1]
  local kind = ARGV[i + 4]
  if kind == 'x' then
    redis.call('ZREM', KEYS[base + 1], id)
    redis.call('HDEL', KEYS[base + 2], id)
    redis.call('ZREM', KEYS[base + 3], id)
  else
    redis.call('ZADD', KEYS[base + 1], ARGV[i + 2], id)
    redis.call('HSET', KEYS[base + 2], id, ARGV[i + 3])
    if kind == 's' then
      redis.call('ZADD', KEYS[base + 3], ARGV[i + 2], id)
    else
      redis.call('ZREM', KEYS[base + 3], id)
    end
    live[base] = true
  end
end
for base in pairs(live) do
  redis.call('PEXPIRE', KEYS[base + 1], ttl)
  redis.call('PEXPIRE', KEYS[base + 2], ttl)
  redis.call('PEXPIRE', KEYS[base + 3], ttl)
end
local counts = {}
for s = 0, swarms - 1 do
  counts[2 * s + 1] = redis.call('ZCOUNT', KEYS[3 * s + 1], '(' .. now, '+inf')
  counts[2 * s + 2] = redis.call('ZCOUNT', KEYS[3 * s + 3], '(' .. now, '+inf')
end
return counts
`;

export const ANNOUNCE_BATCH_SHA = createHash('sha1').update(ANNOUNCE_BATCH_LUA).digest('hex');
