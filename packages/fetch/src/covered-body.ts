import type { AttemptScope } from './attempt-scope.js'

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304])

/**
 * Returns a Response whose body is read under the attempt's signal and whose
 * end (fully read, failed or cancelled) releases the attempt. The platform
 * Response is re-wrapped because a body read is otherwise invisible: the
 * timer must outlive the headers and die with the body.
 */
export function coverBody(response: Response, scope: AttemptScope, translate: (error: unknown) => unknown): Response {
  const body = response.body
  if (body === null || NULL_BODY_STATUS.has(response.status)) {
    scope.release()
    return response
  }
  const reader = body.getReader()
  const stream = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk: Awaited<ReturnType<typeof reader.read>>
        try {
          chunk = await reader.read()
        } catch (error) {
          scope.release()
          controller.error(translate(error))
          return
        }
        if (chunk.done) {
          scope.release()
          controller.close()
        } else {
          controller.enqueue(chunk.value)
        }
      },
      cancel(reason) {
        scope.release()
        return reader.cancel(reason)
      },
    },
    { highWaterMark: 0 },
  )
  try {
    return carryOver(
      response,
      new Response(stream, { status: constructible(response.status), statusText: response.statusText, headers: response.headers }),
    )
  } catch (error) {
    // Whatever the constructor refuses, the attempt's timer and connection are not left behind.
    scope.release()
    reader.cancel(error).catch(() => undefined)
    throw error
  }
}

// The Response constructor takes 200..599, while servers send 600..999 too
// (RFC 9110 reads them as 5xx); the real status is carried over as a property.
const constructible = (status: number): number => (status >= 200 && status <= 599 ? status : 599)

/**
 * A constructed Response has no url, redirect flag or type, and may stand in a
 * status of its own: gives it the original's, and to its clones too.
 */
function carryOver(original: Response, covered: Response): Response {
  const properties: PropertyDescriptorMap = {
    url: { value: original.url, enumerable: true },
    redirected: { value: original.redirected, enumerable: true },
    type: { value: original.type, enumerable: true },
    clone: { value: () => carryOver(original, Response.prototype.clone.call(covered)) },
  }
  if (covered.status !== original.status) {
    properties.status = { value: original.status, enumerable: true }
    properties.ok = { value: original.ok, enumerable: true }
  }
  return Object.defineProperties(covered, properties)
}

/** Drops a response that is not handed to the caller: frees its connection and its attempt. */
export function discard(response: Response, scope: AttemptScope): void {
  scope.release()
  if (response.body !== null && !response.bodyUsed) response.body.cancel().catch(() => undefined)
}
