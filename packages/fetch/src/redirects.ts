/** How many redirects fetch follows before it gives up, as the Fetch standard sets. */
export const MAX_REDIRECTS = 20

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])
// Request headers that describe a body: dropped with the body when a redirect turns the request into a GET.
const BODY_HEADERS = ['content-encoding', 'content-language', 'content-location', 'content-type', 'content-length']
// Credentials that must not follow a request to another origin (the standard names authorization; undici also these).
const ORIGIN_BOUND_HEADERS = ['authorization', 'proxy-authorization', 'cookie']

/** Whether `response` is a redirect the client may have to follow (or one a browser-like fetch hid). */
export function isRedirect(response: Response): boolean {
  return REDIRECT_STATUSES.has(response.status) || response.type === 'opaqueredirect'
}

/** The request of the next hop: where to, and with what. */
export interface Hop {
  readonly href: string
  readonly init: RequestInit & { headers: Headers }
}

/**
 * The next request a redirect asks for, following the Fetch standard's
 * "HTTP-redirect fetch": 303 (and 301/302 after a POST) turns into a GET without
 * its body, 307/308 resend the method and body, credentials stay on their
 * origin, a `same-origin` request does not leave it, and a location with a
 * user or password is refused in `cors` mode (the default). `undefined` when `response` is not a redirect to follow; a network
 * error (the `TypeError` fetch would reject with) when it cannot be followed.
 * The caller follows redirects itself so that each hop can carry a fresh budget.
 */
export function nextHop(response: Response, href: string, init: RequestInit, replayable: boolean): Hop | TypeError | undefined {
  if (!REDIRECT_STATUSES.has(response.status)) return undefined
  const location = response.headers.get('location')
  if (location === null) return undefined
  let next: URL
  try {
    next = new URL(location, href)
  } catch {
    return networkError(`invalid redirect location ${JSON.stringify(location)}`)
  }
  if (next.protocol !== 'http:' && next.protocol !== 'https:') return networkError(`redirect to ${next.protocol} is not followed`)
  if (next.username !== '' || next.password !== '') {
    // A request in fetch's default mode, cors, is not redirected to such a URL (a network error,
    // the server's doing); in the other modes fetch follows it without them.
    if ((init.mode ?? 'cors') === 'cors') return networkError('redirect location includes credentials')
    next.username = ''
    next.password = ''
  }
  const crossOrigin = next.origin !== new URL(href).origin
  if (crossOrigin && init.mode === 'same-origin') return networkError('cross-origin redirect of a "same-origin" request')
  const headers = new Headers(init.headers)
  const method = (init.method ?? 'GET').toUpperCase()
  let hop: RequestInit = init
  const toGet = response.status === 303 ? method !== 'GET' && method !== 'HEAD' : response.status <= 302 && method === 'POST'
  if (toGet) {
    const { body: _body, ...rest } = init
    hop = { ...rest, method: 'GET' }
    for (const name of BODY_HEADERS) headers.delete(name)
  } else if (init.body !== undefined && init.body !== null && !replayable) {
    return networkError('a redirect cannot resend a streamed request body')
  }
  if (crossOrigin) for (const name of ORIGIN_BOUND_HEADERS) headers.delete(name)
  return { href: next.href, init: { ...hop, headers } }
}

/** What fetch rejects with when it cannot go on (a `TypeError` with the reason as `cause`). */
export function networkError(reason: string): TypeError {
  return new TypeError('fetch failed', { cause: new Error(reason) })
}
