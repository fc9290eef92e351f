import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';

/**
 * A TCP proxy in front of one emulator port, whose behaviour a test switches at run time, to show
 * what the service does when a dependency is down, hangs, is slow or drops connections midway.
 *
 * - `pass`: forwards both ways.
 * - `refuse`: resets every connection as it arrives (the client sees ECONNRESET); existing ones are
 *   reset at their next byte.
 * - `down`: the port stops listening, so connecting fails with ECONNREFUSED, and open connections
 *   are reset (a stopped process).
 * - `blackhole`: accepts connections and bytes, never forwards them and never answers.
 * - `delay`: forwards each request chunk `delayMs` late (order kept); answers are not delayed.
 * - `cut`: forwards requests, then cuts the connection (a reset) once `cutAfterBytes` bytes of the
 *   answer reached the client on that connection (counted from the switch to `cut`).
 *
 * The mode applies to connections already open, chunk by chunk, so a client's pooled keep-alive
 * sockets meet the fault too. `set(mode, { killExisting: true })` also resets every open connection.
 *
 * `match` narrows `blackhole` and `cut` to chosen requests: a connection passes until a request
 * chunk matches (its request line or a header, e.g. `X-Amz-Target: …TransactWriteItems` or
 * `POST /bucket/key?uploadId=`), and then meets the fault. HTTP/1.1 clients send one request at a
 * time per connection, so the answer that follows is that request's: this is how a test loses the
 * answer of a write that the service did apply.
 */

export type FaultMode = 'pass' | 'refuse' | 'down' | 'blackhole' | 'delay' | 'cut';

export interface FaultOptions {
  /** `delay`: milliseconds each request chunk waits before it is forwarded. */
  delayMs?: number;
  /** `cut`: bytes of answer a connection delivers before it is cut. */
  cutAfterBytes?: number;
  /** Reset every open connection now. */
  killExisting?: boolean;
  /** `blackhole` and `cut`: only requests whose bytes match meet the fault (see above). */
  match?: RegExp;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: give this to the client instead of the target. */
  readonly url: string;
  readonly port: number;
  readonly mode: FaultMode;
  /** Connections accepted so far (in every mode but `down`). */
  readonly accepted: number;
  /** Connections open now. */
  readonly open: number;
  set(mode: FaultMode, options?: FaultOptions): Promise<void>;
  close(): Promise<void>;
}

interface Connection {
  client: Socket;
  upstream: Socket | undefined;
  /** Answer bytes delivered since the mode became `cut`. */
  answered: number;
  /** Keeps delayed request chunks in order. */
  queue: Promise<void>;
  closed: boolean;
  /** A request matched `match`: the fault applies to this connection from now on. */
  armed: boolean;
}

const listen = (server: Server, port: number) =>
  new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const { hostname, port: targetPortText } = new URL(target);
  const targetPort = Number(targetPortText);
  const targetHost = hostname === 'localhost' ? '127.0.0.1' : hostname;
  let mode: FaultMode = 'pass';
  let options: FaultOptions = {};
  let accepted = 0;
  const connections = new Set<Connection>();
  const timers = new Set<NodeJS.Timeout>();

  const kill = (connection: Connection) => {
    if (connection.closed) return;
    connection.closed = true;
    connections.delete(connection);
    if (!connection.client.destroyed) connection.client.resetAndDestroy();
    connection.upstream?.destroy();
  };

  const forwardRequest = (connection: Connection, chunk: Buffer) => {
    const upstream = connection.upstream;
    if (!upstream || connection.closed) return;
    if (mode === 'delay') {
      const delayMs = options.delayMs ?? 1000;
      connection.queue = connection.queue.then(
        () =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              timers.delete(timer);
              if (!connection.closed && !upstream.destroyed) upstream.write(chunk);
              resolve();
            }, delayMs);
            timers.add(timer);
          }),
      );
    } else {
      // Behind a delayed chunk, later ones wait their turn.
      connection.queue = connection.queue.then(() => {
        if (!connection.closed && !upstream.destroyed) upstream.write(chunk);
      });
    }
  };

  const onConnection = (client: Socket) => {
    accepted++;
    client.setNoDelay(true);
    const connection: Connection = {
      client,
      upstream: undefined,
      answered: 0,
      queue: Promise.resolve(),
      closed: false,
      armed: false,
    };
    /** Whether `blackhole` or `cut` applies to this connection now. */
    const faulty = () => connection.armed || options.match === undefined;
    client.on('error', () => kill(connection));
    client.on('close', () => kill(connection));
    if (mode === 'refuse' || mode === 'down') {
      connection.closed = true;
      client.resetAndDestroy();
      return;
    }
    connections.add(connection);
    // Connects upstream even in blackhole mode, so that switching back to pass heals the connection.
    const upstream = tcpConnect({ host: targetHost, port: targetPort });
    upstream.setNoDelay(true);
    connection.upstream = upstream;
    upstream.on('error', () => kill(connection));
    let upstreamEnded = false;
    upstream.on('close', () => {
      if (!upstreamEnded) return kill(connection);
      // The target closed after its answer (moto does, after some): the client still gets every
      // byte written to it, then the close. A reset here would throw away what its socket had not
      // sent yet, and the client would see an answer cut short ("aborted") that no fault caused.
      if (connection.closed) return;
      connection.closed = true;
      connections.delete(connection);
      client.end();
    });
    upstream.on('end', () => {
      upstreamEnded = true;
      if (!connection.closed) client.end();
    });
    // Backpressure: the target's answer waits while the client is slower than the target.
    client.on('drain', () => upstream.resume());
    client.on('end', () => {
      connection.queue = connection.queue.then(() => {
        if (!connection.closed) upstream.end();
      });
    });

    client.on('data', (chunk: Buffer) => {
      if (options.match && !connection.armed && options.match.test(chunk.toString('latin1')))
        connection.armed = true;
      switch (mode) {
        case 'refuse':
        case 'down':
          return kill(connection);
        case 'blackhole':
          // Swallowed: the request never arrives, the client waits.
          if (faulty()) return;
          return forwardRequest(connection, chunk);
        default:
          return forwardRequest(connection, chunk);
      }
    });
    const answer = (chunk: Buffer) => {
      if (!client.write(chunk)) upstream.pause();
    };
    upstream.on('data', (chunk: Buffer) => {
      if (connection.closed) return;
      switch (mode) {
        case 'refuse':
        case 'down':
          return kill(connection);
        case 'blackhole':
          if (faulty()) return;
          return answer(chunk);
        case 'cut': {
          if (!faulty()) return answer(chunk);
          const room = (options.cutAfterBytes ?? 0) - connection.answered;
          if (room >= chunk.length) {
            connection.answered += chunk.length;
            return answer(chunk);
          }
          if (room > 0) {
            connection.answered += room;
            // Let the partial answer reach the client before the reset.
            client.write(chunk.subarray(0, room), () => kill(connection));
            return;
          }
          return kill(connection);
        }
        default:
          return answer(chunk);
      }
    });
  };

  let server = createServer(onConnection);
  const port = await listen(server, 0);
  let listening = true;

  const closeServer = () =>
    new Promise<void>((resolve) => {
      if (!listening) return resolve();
      listening = false;
      server.close(() => resolve());
    });

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get mode() {
      return mode;
    },
    get accepted() {
      return accepted;
    },
    get open() {
      return connections.size;
    },
    async set(next: FaultMode, nextOptions: FaultOptions = {}) {
      mode = next;
      options = nextOptions;
      for (const connection of connections) {
        connection.answered = 0;
        connection.armed = false;
      }
      // A stopped process takes its connections with it.
      if (nextOptions.killExisting || next === 'down')
        for (const connection of [...connections]) kill(connection);
      if (next === 'down') {
        await closeServer();
      } else if (!listening) {
        server = createServer(onConnection);
        await listen(server, port);
        listening = true;
      }
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      for (const connection of [...connections]) kill(connection);
      await closeServer();
    },
  };
}
