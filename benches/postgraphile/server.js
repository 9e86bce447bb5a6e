// PostGraphile 4 on the same database and tables, for the side-by-side benchmark.
// It connects as rowcast_app (so the same RLS policies apply) and sets the same three
// transaction-local settings rowcast's app.begin_request sets, from request headers.
// Usage: node server.js <postgres dsn> <port>
const http = require("http");
const { Pool } = require("pg");
const { postgraphile } = require("postgraphile");

const [, , dsn, port] = process.argv;
const pool = new Pool({ connectionString: dsn, max: Number(process.env.POOL_SIZE || 16) });

const middleware = postgraphile(pool, "public", {
  pgSettings: (req) => ({
    "app.user_id": req.headers["x-user-id"],
    "app.tenant_id": req.headers["x-tenant-id"],
    "app.role": req.headers["x-role"],
  }),
  disableQueryLog: true,
  retryOnInitFail: false,
  graphiql: false,
});

http.createServer(middleware).listen(Number(port), "127.0.0.1", () => {
  console.log("ready");
});
