// The cleave playground: GraphiQL on /graphql, subscriptions on /graphql/ws.
// Put `{"Authorization": "Bearer <access token>"}` in the Headers tab: queries and mutations send
// it as a header, and subscriptions send it in their connection_init payload.
(function () {
  var socket = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql/ws';

  function authorization() {
    try {
      var headers = JSON.parse(localStorage.getItem('graphiql:headers') || '{}');
      return headers.Authorization || headers.authorization;
    } catch (error) {
      return undefined;
    }
  }

  var fetcher = GraphiQL.createFetcher({
    url: '/graphql',
    subscriptionUrl: socket,
    wsConnectionParams: function () {
      var value = authorization();
      return value ? { Authorization: value } : {};
    },
  });

  var example = [
    '# Products, 5 at a time. Log in with the `login` mutation and put',
    '# {"Authorization": "Bearer <accessToken>"} in Headers for `me`, `myOrders` and `placeOrder`.',
    '{',
    '  products(first: 5) {',
    '    edges { node { id name price { amount currency } stockAvailable category { name } } }',
    '    pageInfo { hasNextPage endCursor }',
    '  }',
    '}',
    '',
  ].join('\n');

  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, { fetcher: fetcher, defaultQuery: example, shouldPersistHeaders: true })
  );
})();
