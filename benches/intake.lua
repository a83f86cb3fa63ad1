-- wrk script for `b24-robot bench intake-server`: every request a distinct delivery (its own
-- deal id and ts), form-encoded exactly as Bitrix24 posts it.
--   wrk -t2 -c32 -d10s -s benches/intake.lua http://127.0.0.1:PORT/bitrix24/events
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local counter = 0
local thread_id = 0

function setup(thread)
  thread:set("id", thread_id)
  thread_id = thread_id + 1
end

function request()
  counter = counter + 1
  local deal = 1000000 + id * 10000000 + counter
  local body = "event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=" .. deal ..
    "&ts=" .. (1700000000 + counter) ..
    "&auth%5Bmember_id%5D=bench&auth%5Bapplication_token%5D=bench-token"
  return wrk.format(nil, nil, nil, body)
end
