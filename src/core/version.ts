/** kpass's release; `/version` and `kpass version` print it. */
export const KPASS_VERSION = "0.1.0";
