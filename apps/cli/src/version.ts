/** Shoal's version, as reported in `created by` and `shoal --version`. */
export const VERSION = '0.1.0';
