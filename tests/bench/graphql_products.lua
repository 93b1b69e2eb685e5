-- wrk script: the GraphQL product list, 20 products with their category (one request body).
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = '{"query":"{ products(first: 20) { edges { node { id sku name description price { amount currency } stockAvailable version category { id name } } } } }"}'
