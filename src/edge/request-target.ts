/**
 * Request targets are never resolved: a dot segment in any spelling is refused on every request,
 * as kube-apiserver refuses it (404), so no path can climb out of the cluster or object it names
 * and the audit log records exactly what the client sent.
 */

function percentDecode(path: string): string {
  // Decode byte-wise without throwing on malformed escapes: an invalid "%zz" stays as it is.
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
}

/** Whether the path of `target` has a "." or ".." segment, literal or percent-encoded, with "/" or "\" as separator. */
export function hasDotSegment(target: string): boolean {
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  if (!path.includes(".") && !/%2e/i.test(path)) return false;
  return percentDecode(path)
    .split(/[/\\]/)
    .some((segment) => segment === "." || segment === "..");
}
