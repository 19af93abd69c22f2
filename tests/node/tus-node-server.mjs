// A peer tus server for the interop tests and bench/: @tus/server over @tus/file-store or @tus/s3-store.
//
//   node tus-node-server.mjs --port P --store file --dir DIR
//   node tus-node-server.mjs --port P --store s3 --endpoint URL --bucket NAME [--part-size BYTES]
//
// S3 keys come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY. Listens on 127.0.0.1 only and
// prints "listening PORT" once it accepts connections.
import { parseArgs } from 'node:util';
import { Server } from '@tus/server';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    store: { type: 'string' },
    dir: { type: 'string' },
    endpoint: { type: 'string' },
    bucket: { type: 'string' },
    'part-size': { type: 'string', default: String(16 * 1024 * 1024) },
  },
});

async function makeStore() {
  if (opts.store === 'file') {
    const { FileStore } = await import('@tus/file-store');
    return new FileStore({ directory: opts.dir });
  }
  if (opts.store === 's3') {
    const { S3Store } = await import('@tus/s3-store');
    return new S3Store({
      partSize: Number(opts['part-size']),
      s3ClientConfig: {
        bucket: opts.bucket,
        endpoint: opts.endpoint,
        region: 'us-east-1',
        forcePathStyle: true,
        credentials: {
          accessKeyId: process.env.AWS_ACCESS_KEY_ID,
          secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
        },
      },
    });
  }
  throw new Error(`--store must be file or s3, not ${opts.store}`);
}

const server = new Server({ path: '/files', datastore: await makeStore() });
const http = server.listen({ host: '127.0.0.1', port: Number(opts.port) }, () => {
  console.log(`listening ${opts.port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    http.closeAllConnections();
    process.exit(0);
  });
}
