/** Counts the bytes of a response body on their way out, for the audit line written at its end. */

/**
 * `onDone(bytes)` runs once: at once when the length is known (a counting wrapper would take the
 * body off Bun's native path), else when the body has been read to its end or the client left.
 */
export function meterResponse(response: Response, clientSignal: AbortSignal, onDone: (bytesOut: number) => void): Response {
  const length = response.headers.get("content-length");
  if (!response.body || length !== null) {
    onDone(Number(length ?? 0));
    return response;
  }
  let bytesOut = 0;
  let done = false;
  const finish = () => {
    if (done) return;
    done = true;
    onDone(bytesOut);
  };
  const counted = response.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        bytesOut += chunk.byteLength;
        controller.enqueue(chunk);
      },
      flush: finish,
    }),
  );
  clientSignal.addEventListener("abort", finish, { once: true });
  return new Response(counted, { status: response.status, statusText: response.statusText, headers: response.headers });
}
