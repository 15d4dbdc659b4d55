/** Free TCP ports on 127.0.0.1 for servers that tests and benchmarks start themselves (no vitest import here). */
import { createServer, type Server } from 'node:net';

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, and whose successor was too (a Kafka broker
 * of a test's own takes `port` and its controller `port + 1`). Tests that start servers of their
 * own take their ports here instead of fixing them, so that test files running side by side, and
 * several checkouts testing on one machine, never collide.
 */
export async function freePort(consecutive = 1): Promise<number> {
  const listen = (port: number) =>
    new Promise<Server | undefined>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  for (let attempt = 0; attempt < 200; attempt++) {
    // A random start in the range Linux never hands out as an ephemeral port (32768-60999).
    const base = 20_000 + Math.floor(Math.random() * 12_000);
    const servers: Server[] = [];
    let ok = true;
    for (let i = 0; i < consecutive && ok; i++) {
      const s = await listen(base + i);
      if (s) servers.push(s);
      else ok = false;
    }
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    if (ok) return base;
  }
  throw new Error('no free TCP port found on 127.0.0.1');
}
