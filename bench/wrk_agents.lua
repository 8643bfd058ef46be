-- wrk script for bench/: agents posting metric samples, each request from the next host.
--
--   wrk -t2 -c8 -d5s -s bench/wrk_agents.lua URL -- HOSTS_FILE THREADS SAMPLES BASE_EPOCH \
--       [METHOD] [PROBLEM]
--
-- HOSTS_FILE has one "name key" per line; each of wrk's THREADS threads (its -t) takes
-- every THREADS-th host, so no two threads post for one host. Each request carries SAMPLES
-- readings of its host (one object for 1, a list otherwise), stamped from BASE_EPOCH
-- (seconds) on, 10 ms apart per host: none is a resend within a run, and a later run
-- given a later BASE_EPOCH sends only newer ones. METHOD (default POST) lets the same
-- script, body and all, drive a trivial GET endpoint: the generator's own ceiling.
-- PROBLEM=1 sends disk at 97% (a problem counted on the host's open ticket).
-- done() prints one JSON line: requests, statuses, socket errors, duration, latency
-- percentiles (microseconds) and how many samples the server answered as duplicates.

local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

local hosts = {}
local sent = {}
local next_host = 1
local samples, base, method, disk
statuses = {}
duplicates = 0

function init(args)
   local path = args[1]
   local n_threads = tonumber(args[2])
   samples = tonumber(args[3])
   base = tonumber(args[4])
   method = args[5] or "POST"
   disk = (args[6] == "1") and "97.0" or "45.0"
   local index = 0
   for line in io.lines(path) do
      local name, key = line:match("^(%S+)%s+(%S+)$")
      if name then
         if index % n_threads == id then
            table.insert(hosts, { name = name, key = key })
            sent[#hosts] = 0
         end
         index = index + 1
      end
   end
end

local function stamp(centiseconds)
   local seconds = base + math.floor(centiseconds / 100)
   return os.date("!%Y-%m-%dT%H:%M:%S", seconds) .. string.format(".%02d0000Z", centiseconds % 100)
end

function request()
   local i = next_host
   next_host = next_host % #hosts + 1
   local host = hosts[i]
   local parts = {}
   for k = 1, samples do
      parts[k] = '{"host":"' .. host.name .. '","taken_at":"' .. stamp(sent[i]) ..
         '","disk_usage":' .. disk .. ',"memory_usage":50.0,"cpu_usage":25.0,' ..
         '"dns_latency_ms":18.0,"firewall_change_requested":0}'
      sent[i] = sent[i] + 1
   end
   local body = samples == 1 and parts[1] or ("[" .. table.concat(parts, ",") .. "]")
   return wrk.format(method, nil, {
      ["Host"] = "localhost",
      ["Authorization"] = "Bearer " .. host.key,
      ["Content-Type"] = "application/json",
   }, body)
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
   if status == 201 then
      local _, n = body:gsub('"duplicate":true', "")
      duplicates = duplicates + n
   end
end

function done(summary, latency, requests)
   local by_status, dups = {}, 0
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses")) do
         by_status[status] = (by_status[status] or 0) + n
      end
      dups = dups + thread:get("duplicates")
   end
   local parts = {}
   for status, n in pairs(by_status) do
      table.insert(parts, string.format('"%d":%d', status, n))
   end
   local e = summary.errors
   io.write(string.format(
      '{"requests":%d,"duration_us":%d,"statuses":{%s},"errors":{"connect":%d,"read":%d,' ..
      '"write":%d,"timeout":%d},"duplicates":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
      '"max_us":%d}\n',
      summary.requests, summary.duration, table.concat(parts, ","), e.connect, e.read,
      e.write, e.timeout, dups, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end
