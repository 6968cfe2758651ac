// The benchmark's yardstick: the least a Node HTTP server can do, a fixed JSON body.
import { createServer } from 'node:http';

const body = JSON.stringify({
  status: 'available',
  system_info: { environment: 'production', version: '1.0.0' },
});
const server = createServer((_request, response) => {
  response.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  response.end(body);
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as { port: number }).port })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
