-- wrk script for POST /api/orders: a fresh Idempotency-Key per request, the approving test card.
-- Reads BENCH_TOKEN (a customer's access token), BENCH_PRODUCT (a product id) and BENCH_PREFIX.
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("thread_id", threads)
end

local counter = 0
local token = os.getenv("BENCH_TOKEN")
local product = os.getenv("BENCH_PRODUCT")
local prefix = os.getenv("BENCH_PREFIX") or "bench"
local body = string.format(
  '{"items":[{"product_id":"%s","quantity":1}],"payment":{"card_number":"4242424242424242"}}', product)

function request()
  counter = counter + 1
  local headers = {
    ["content-type"] = "application/json",
    ["authorization"] = "Bearer " .. token,
    ["idempotency-key"] = string.format("%s-%s-%d", prefix, tostring(thread_id), counter),
  }
  return wrk.format("POST", nil, headers, body)
end
