-- wrk script: one product by id over GraphQL, every REST field (BENCH_PRODUCT is its id).
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"query":"query($id: ID!) { product(id: $id) { id sku name description price { amount currency } stockAvailable version } }","variables":{"id":"' .. os.getenv("BENCH_PRODUCT") .. '"}}'
