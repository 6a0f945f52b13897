/**
 * Where the login form may send the browser afterwards. A regular expression over the raw value
 * is not enough: browsers strip tabs and newlines from URLs and read `\` as `/`, so `/\t/evil.example`
 * passes a "starts with one slash" test and lands off-site, and CR/LF would reach the Location
 * header. So the target is parsed the way a browser parses it, against the request's own origin,
 * kept only when it stays on that origin, and re-serialised (which percent-encodes anything
 * unsafe in a header).
 */
export function sameOriginPath(target: unknown, origin: string): string {
  if (typeof target !== 'string' || target === '' || target.length > 2048) return '/';
  let url: URL;
  try {
    url = new URL(target, `${origin}/`);
  } catch {
    return '/';
  }
  if (url.origin !== new URL(origin).origin) return '/';
  // The UI routes by fragment (/#/runs/<id>), so the fragment is kept; it never reaches a server.
  return `${url.pathname}${url.search}${url.hash}`;
}
