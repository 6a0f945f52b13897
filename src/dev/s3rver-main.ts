/**
 * Child-process entry for the embedded S3 server. It runs in its own process because s3rver's
 * ListObjectsV2 continuation tokens use DES, which OpenSSL 3 only offers with the legacy provider
 * (`node --openssl-legacy-provider`); enabling that for the whole application would be wrong.
 * Usage: node --openssl-legacy-provider s3rver-main DIR PORT [BUCKET...]; prints `{"port":N}`.
 */
import S3rver from 's3rver';

const [directory, portArg, ...buckets] = process.argv.slice(2);
if (!directory || !portArg) {
  process.stderr.write('usage: s3rver-main DIR PORT [BUCKET...]\n');
  process.exit(2);
}

const server = new S3rver({
  address: '127.0.0.1',
  port: Number(portArg),
  directory,
  silent: true,
  configureBuckets: buckets.map((name) => ({ name, configs: [] })),
});

const address = await server.run();
process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);

const stop = (): void => {
  void server.close().finally(() => process.exit(0));
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Die with the parent: an orphaned S3 server would hold the port and the temp directory.
process.on('disconnect', stop);
