import type { Socket } from "bun";

/** What a pipe end needs of a socket; Bun's TCP and TLS sockets fit, whatever their data type. */
export interface ByteSocket {
  write(data: Uint8Array): number;
  pause(): void;
  resume(): void;
  shutdown(): void;
  end(): void;
}

/**
 * One side of a byte pipe between two Bun sockets. Bytes for this side queue here while its
 * socket cannot take them, and the other side stops reading until they drain (backpressure).
 * Half-close and close propagate: FIN becomes shutdown() once the queue is empty; a close
 * closes the other side after it has flushed, and at the latest a second later.
 */
export class PipeEnd {
  socket: ByteSocket | undefined;
  peer: PipeEnd | undefined;
  private readonly queue: Uint8Array[] = [];
  private finRequested = false;
  private closeRequested = false;
  closed = false;
  /** Bytes written to this side (for audit). */
  bytesWritten = 0;
  onClose: (() => void) | undefined;

  attach(socket: ByteSocket): void {
    this.socket = socket;
    // The other side may have gone while this one was still connecting.
    if (this.closed) {
      socket.end();
      return;
    }
    this.flush();
    if (this.peer?.closed) this.closeSoon();
  }

  write(chunk: Uint8Array): void {
    if (this.closed || chunk.byteLength === 0) return;
    this.bytesWritten += chunk.byteLength;
    if (!this.socket || this.queue.length > 0) {
      this.queue.push(chunk);
      if (this.queue.length === 1 || !this.socket) this.peer?.socket?.pause();
      return;
    }
    const written = this.socket.write(chunk);
    if (written < chunk.byteLength) {
      this.queue.push(chunk.subarray(Math.max(written, 0)));
      this.peer?.socket?.pause();
    }
  }

  /** Writes what is queued; when all of it is out, lets the other side read again. */
  flush(): void {
    const socket = this.socket;
    if (!socket || this.closed) return;
    while (this.queue.length > 0) {
      const chunk = this.queue[0]!;
      const written = socket.write(chunk);
      if (written < chunk.byteLength) {
        this.queue[0] = chunk.subarray(Math.max(written, 0));
        return;
      }
      this.queue.shift();
    }
    this.peer?.socket?.resume();
    if (this.closeRequested) this.close();
    else if (this.finRequested) socket.shutdown();
  }

  /** The other side sent FIN: pass it on once everything before it is written. */
  halfClose(): void {
    this.finRequested = true;
    if (this.socket && this.queue.length === 0) this.socket.shutdown();
  }

  /** The other side went away: close after flushing, or after a second at most. */
  closeSoon(): void {
    if (this.closed) return;
    this.closeRequested = true;
    if (!this.socket || this.queue.length === 0) {
      this.close();
      return;
    }
    setTimeout(() => this.close(), 1000).unref();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.socket?.end();
    this.onClose?.();
  }

  /** Called from the socket's close handler. */
  closedByPeer(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.onClose?.();
    this.peer?.closeSoon();
  }
}

/** Links two ends so that each one's incoming data is written to the other. */
export function linkPipe(a: PipeEnd, b: PipeEnd): void {
  a.peer = b;
  b.peer = a;
}

/** Socket handlers that move bytes through a PipeEnd stored as the socket's data. */
export const pipeHandlers = {
  data(socket: Socket<PipeEnd>, data: Uint8Array) {
    socket.data.peer?.write(data);
  },
  drain(socket: Socket<PipeEnd>) {
    socket.data.flush();
  },
  end(socket: Socket<PipeEnd>) {
    socket.data.peer?.halfClose();
  },
  close(socket: Socket<PipeEnd>) {
    socket.data.closedByPeer();
  },
  error(socket: Socket<PipeEnd>) {
    socket.data.closedByPeer();
  },
};
