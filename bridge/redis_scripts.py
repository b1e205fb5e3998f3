"""The Lua scripts of `bridge.redis_store`, as text (this module imports nothing).

Each script is one round trip, atomic on the server: a compare and a write that must not be
split (between a `GET` and a `PEXPIRE` another worker may take a lapsed lease), with no retry
loop under contention and no connection pinned from the pool as `WATCH`/`MULTI` would need.
The keys a script touches are named in KEYS and share one hash tag (one session's, or one
group's), so the scripts also run on a Redis Cluster.
"""

# KEYS[1] the owner key; ARGV[1] the owner, ARGV[2] the lease in ms. Take a free lease (2), or
# renew our own (1); a live lease of another owner is left alone (0). The owner tells 2 from 1
# on renewal: its lease had vanished (a Redis restarted empty, or a lapse nobody took), and so
# may the record it guards.
ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 2
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
TAKEN = 2

# KEYS[1] the owner key; ARGV[1] the owner. Only the holder may give the lease up: a worker
# whose lease lapsed and was taken must not free its successor's.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# KEYS[1] the owner key; ARGV[1] the claimer, ARGV[2] the lease in ms, ARGV[3] the channel
# prefix, ARGV[4] a message. Take a free lease (2), or renew our own (1); a lease another
# worker holds is left alone and that worker is sent the message, in the same step, so a claim
# costs one round trip whoever holds the session ({0, holder}).
CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2, ''}
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, ''}
end
if holder then
  redis.call('PUBLISH', ARGV[3] .. holder, ARGV[4])
  return {0, holder}
end
return {0, ''}
"""

# KEYS[1] the owner key; ARGV[1] the holder, ARGV[2] the next owner, ARGV[3] the lease in ms,
# ARGV[4] a channel, ARGV[5] the message for it. The holder passes the lease on directly, so
# no third worker can slip in between; the channel is told either way (1 passed, 0 not ours).
GIVE = """
local ours = redis.call('GET', KEYS[1]) == ARGV[1]
if ours then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
redis.call('PUBLISH', ARGV[4], ARGV[5])
if ours then
  return 1
end
return 0
"""

# KEYS: owner, record, then the lists in `LISTS` order. ARGV: [1] the writer ('' for a write
# not fenced by a lease), [2] the lease in ms, [3] the TTL in ms, [4] '1' when the write
# replaces everything, [5] the head, [6] '1' when [7] holds tools to write; then per list
# [reset '1'/'0', drop, expected length, n, n items]. Returns 1 written; 0 another worker
# holds the lease; 2 the lease is gone (a restarted Redis may have lost the rest too), or a
# list is not the length the changes were computed from: only a whole write may then go ahead
# (taking the lease again). Everything is checked before anything is written.
SAVE = """
local writer = ARGV[1]
if writer ~= '' then
  local holder = redis.call('GET', KEYS[1])
  if not holder then
    if ARGV[4] ~= '1' then
      return 2
    end
    redis.call('SET', KEYS[1], writer, 'PX', ARGV[2])
  elseif holder ~= writer then
    return 0
  end
end
if ARGV[4] ~= '1' then
  local j = 8
  for k = 3, #KEYS do
    if ARGV[j] ~= '1' and redis.call('LLEN', KEYS[k]) ~= tonumber(ARGV[j + 2]) then
      return 2
    end
    j = j + 4 + tonumber(ARGV[j + 3])
  end
end
local ttl = ARGV[3]
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
end
redis.call('HSET', KEYS[2], 'head', ARGV[5])
if ARGV[6] == '1' then
  redis.call('HSET', KEYS[2], 'tools', ARGV[7])
end
redis.call('PEXPIRE', KEYS[2], ttl)
local i = 8
for k = 3, #KEYS do
  local reset, drop, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 3])
  i = i + 4
  if reset == '1' then
    redis.call('DEL', KEYS[k])
  elseif drop > 0 then
    redis.call('LTRIM', KEYS[k], drop, -1)
  end
  local done = 0
  while done < n do
    local chunk = math.min(n - done, 1000)
    redis.call('RPUSH', KEYS[k], unpack(ARGV, i + done, i + done + chunk - 1))
    done = done + chunk
  end
  i = i + n
  redis.call('PEXPIRE', KEYS[k], ttl)
end
return 1
"""

# KEYS[1] a value's key, KEYS[2] its group's list; ARGV[1] the value, ARGV[2] its TTL in ms,
# ARGV[3] the group's cap, ARGV[4] the value's name, ARGV[5] the prefix of the group's value
# keys. Stores the value (unless its key is taken: 0) and keeps the group to its newest
# ARGV[3] values, deleting the oldest; the group's keys share a hash tag, so a Redis Cluster
# finds them all in one slot.
PUT_BOUNDED = """
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[3]) do
  redis.call('DEL', ARGV[5] .. redis.call('LPOP', KEYS[2]))
end
return 1
"""
