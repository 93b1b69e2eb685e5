#!/usr/bin/env bash
# Fetches the playground's third-party files again from the npm registry, at the versions in
# VERSIONS, into this folder. The binary embeds them: the page works with no internet.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
npm pack --silent graphiql@4.1.2 react@18.3.1 react-dom@18.3.1 >/dev/null
for package in graphiql-4.1.2 react-18.3.1 react-dom-18.3.1; do
  mkdir "$package" && tar xzf "$package.tgz" -C "$package"
done
cp graphiql-4.1.2/package/graphiql.min.js graphiql-4.1.2/package/graphiql.min.css "$here/"
cp react-18.3.1/package/umd/react.production.min.js react-dom-18.3.1/package/umd/react-dom.production.min.js "$here/"
cp graphiql-4.1.2/package/LICENSE "$here/LICENSE-graphiql"
cp react-18.3.1/package/LICENSE "$here/LICENSE-react"
cp react-dom-18.3.1/package/LICENSE "$here/LICENSE-react-dom"
echo "updated $here"
