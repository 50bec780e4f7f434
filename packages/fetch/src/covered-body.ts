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
  const covered = new Response(stream, { status: response.status, statusText: response.statusText, headers: response.headers })
  // A constructed Response has no url, redirect flag or type: carry the original's.
  Object.defineProperties(covered, {
    url: { value: response.url, enumerable: true },
    redirected: { value: response.redirected, enumerable: true },
    type: { value: response.type, enumerable: true },
  })
  return covered
}

/** Drops a response that is not handed to the caller: frees its connection and its attempt. */
export function discard(response: Response, scope: AttemptScope): void {
  scope.release()
  if (response.body !== null && !response.bodyUsed) response.body.cancel().catch(() => undefined)
}
