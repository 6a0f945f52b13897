/**
 * Is a Docker engine answering? Checked in well under a second so machines without one (like CI
 * here) fall back to local servers without testcontainers' retries and noise.
 */
import { existsSync } from 'node:fs';
import { request } from 'node:http';

export async function dockerAnswers(timeoutMs = 800): Promise<boolean> {
  if (process.env.GCA_TEST_NO_DOCKER === '1') return false;
  const host = process.env.DOCKER_HOST;
  let socketPath: string | undefined;
  let url: URL | undefined;
  if (!host) socketPath = '/var/run/docker.sock';
  else if (host.startsWith('unix://')) socketPath = host.slice('unix://'.length);
  else if (host.startsWith('tcp://')) url = new URL(host.replace('tcp://', 'http://'));
  else return false;
  if (socketPath && !existsSync(socketPath)) return false;
  return new Promise((resolve) => {
    const req = request(
      socketPath ? { socketPath, path: '/_ping', timeout: timeoutMs } : { host: url?.hostname, port: url?.port, path: '/_ping', timeout: timeoutMs },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.on('error', () => resolve(false));
    req.end();
  });
}
