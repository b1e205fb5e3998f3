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


# KEYS: the owner key, the record, then the lists in `LISTS` order (turns first). ARGV[1] the
# claimer, [2] the lease in ms, [3] the channel prefix, [4] the message asking the holder to
# let go, [5] the client's principal, [6] the SHA-1 of its resume token ('' without one);
# then per list, what the
# claimer still holds of it from an earlier stay: the count of its items ever added and of
# those kept then ('' and '' when nothing); then the name of the counting those counts belong
# to (`Session.counting`); last, '1' when the claimer runs the session in memory (a client back
# on the worker that parked it), so it needs no record if the lease is still its own.
#
# First the client is checked against the stored head, as `bridge.access.Access.admits` does
# (a refusal: {-1}), so a stranger cannot move a session. Then the lease: taken when free (2)
# or renewed when ours (1); taken from a holder that parked the session (3: its client left,
# and everything it did is stored), which finds out by itself (its next renewal, or the next
# thing it does for the session); otherwise the holder is asked to let go, in the same step
# ({0, holder}). With the lease comes the record, so a claim that succeeds
# costs one round trip: {how, holder, head, tools, then per list: dropped, items}. A list is
# whole (dropped -1), or, where the claimer holds an earlier copy that the stored counts
# extend, only the items added since, after dropping `dropped` of the copy's oldest. The
# digests are compared, not the tokens, so the comparison's time says nothing of the token.
ARRIVE = """
local head = redis.call('HGET', KEYS[2], 'head')
local h = head and cjson.decode(head)
if h then
  if h.owner ~= cjson.null and h.owner ~= ARGV[5] then
    return {-1}
  end
  if ARGV[6] == '' then
    if h.run ~= cjson.null or next(h.queue) ~= nil or next(h.calls.pending) ~= nil
        or next(h.approvals.open) ~= nil or redis.call('LLEN', KEYS[3]) ~= 0 then
      return {-1}
    end
  elseif redis.sha1hex(h.resume_token) ~= ARGV[6] then
    return {-1}
  end
end
local function added(k)
  if not h then
    return nil
  end
  if k == 2 then
    return h.outbound and h.outbound.seq
  end
  local counts = h.added
  if type(counts) ~= 'table' or counts[4] ~= ARGV[15] then
    return nil
  end
  return counts[({1, nil, 2, 3})[k]]
end
local function part(k)
  local key = KEYS[2 + k]
  local since, kept = tonumber(ARGV[5 + 2 * k]), tonumber(ARGV[6 + 2 * k])
  local now = added(k)
  if since and kept and type(now) == 'number' then
    local length = redis.call('LLEN', key)
    local new = now - since
    local dropped = kept + new - length
    if new >= 0 and new <= length and dropped >= 0 and dropped <= kept then
      if new == 0 then
        return dropped, {}
      end
      return dropped, redis.call('LRANGE', key, length - new, -1)
    end
  end
  return -1, redis.call('LRANGE', key, 0, -1)
end
local function granted(how, holder)
  redis.call('HDEL', KEYS[2], 'parked')
  local parts = redis.call('HMGET', KEYS[2], 'head', 'tools')
  local out = {how, holder, parts[1], parts[2]}
  for k = 1, #KEYS - 2 do
    local dropped, items = part(k)
    out[#out + 1] = dropped
    out[#out + 1] = items
  end
  return out
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return granted(2, '')
end
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if ARGV[16] == '1' then
    redis.call('HDEL', KEYS[2], 'parked')
    return {1, ''}
  end
  return granted(1, '')
end
if not holder then
  return {0, ''}
end
if redis.call('HGET', KEYS[2], 'parked') == holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return granted(3, holder)
end
redis.call('PUBLISH', ARGV[3] .. holder, ARGV[4])
return {0, holder}
"""
REFUSED, ASKED, RENEWED, FREE, UNPARKED = -1, 0, 1, 2, 3

# KEYS[1] the owner key, KEYS[2] the record; ARGV[1] the holder. Mark the session parked (1):
# its holder runs it with no client and has stored all of it, so a claimer may take the lease
# without asking. Only the holder may (0 otherwise); a whole write, or any claim that takes or
# renews the lease, clears the mark.
PARK = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], 'parked', ARGV[1])
  return 1
end
return 0
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
