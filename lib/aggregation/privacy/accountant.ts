/**
 * Renyi-DP accountant for the (Poisson-subsampled) Gaussian mechanism.
 *  - q = 1: RDP(alpha) = alpha / (2 z^2) per round (Mironov 2017).
 *  - 0 < q < 1: sampled Gaussian mechanism, Mironov, Talwar & Zhang 2019 ("Renyi Differential
 *    Privacy of the Sampled Gaussian Mechanism"), §3.3: the binomial expansion for integer orders
 *    and the erfc-based series for fractional orders — the same computation as TF Privacy /
 *    dp_accounting `_compute_log_a` and Opacus `analysis/rdp.py`.
 *  - Composition over rounds: RDP adds per order.
 *  - (epsilon, delta): by default the improved conversion of Balle et al. 2020 (Theorem 21 of
 *    arXiv:1905.09982; Canonne, Kamath & Steinke 2020, Prop. 12), as in dp_accounting and Opacus:
 *    eps = rdp + log1p(-1/a) - log(delta*a)/(a-1). The classic Mironov 2017 bound
 *    eps = rdp + log(1/delta)/(a-1) is available as `conversion: "mironov2017"`.
 * Amplification by sampling only holds if the server's choice of silos is random and secret
 * (Poisson); with a predictable sampler, account with sampleRate = 1.
 */
import { PrivacyAccountingError, PrivacyConfigError } from "./errors";

/** Orders grid of TF Privacy / Opacus (`DEFAULT_ALPHAS`). */
export const DEFAULT_RDP_ORDERS: readonly number[] = [...Array.from({ length: 99 }, (_, x) => 1 + (x + 1) / 10), ...Array.from({ length: 52 }, (_, x) => 12 + x)];

export type RdpConversion = "balle2020" | "mironov2017";

function logAdd(a: number, b: number): number {
  if (a === -Infinity) return b;
  if (b === -Infinity) return a;
  const hi = Math.max(a, b);
  return Math.log1p(Math.exp(Math.min(a, b) - hi)) + hi;
}

function logSub(a: number, b: number): number {
  if (b === -Infinity) return a;
  if (a < b) throw new PrivacyAccountingError("log-space subtraction went negative (numerical failure in the RDP series)");
  if (a === b) return -Infinity;
  return Math.log(-Math.expm1(b - a)) + a; // log(exp(a) - exp(b))
}

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);

/** log(erfc(x)) accurate for large positive x (where erfc underflows). */
export function logErfc(x: number): number {
  if (x >= 2) {
    // Continued fraction erfc(x) = exp(-x^2)/sqrt(pi) * 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))),
    // evaluated with the modified Lentz algorithm.
    const tiny = 1e-300;
    let f = x;
    let c = x;
    let d = 0;
    for (let n = 1; n < 5000; n++) {
      const a = n / 2;
      d = x + a * d;
      d = d === 0 ? tiny : d;
      c = x + a / c;
      c = c === 0 ? tiny : c;
      d = 1 / d;
      const delta = c * d;
      f *= delta;
      if (Math.abs(delta - 1) < 1e-16) break;
    }
    return -x * x - LOG_SQRT_PI - Math.log(f);
  }
  if (x <= -2) return Math.log(2 - Math.exp(logErfc(-x)));
  // |x| < 2: erf(x) = 2/sqrt(pi) * exp(-x^2) * sum_n 2^n x^(2n+1) / (1*3*...*(2n+1)) (all terms positive)
  let term = x;
  let sum = x;
  for (let n = 1; n < 500; n++) {
    term *= (2 * x * x) / (2 * n + 1);
    sum += term;
    if (Math.abs(term) < 1e-17 * Math.abs(sum)) break;
  }
  const erf = (2 / Math.sqrt(Math.PI)) * Math.exp(-x * x) * sum;
  return Math.log(1 - erf);
}

function logAIntegerOrder(q: number, sigma: number, alpha: number): number {
  let logA = -Infinity;
  let logBinom = 0; // log C(alpha, i), built incrementally
  for (let i = 0; i <= alpha; i++) {
    if (i > 0) logBinom += Math.log(alpha - i + 1) - Math.log(i);
    const s = logBinom + i * Math.log(q) + (alpha - i) * Math.log1p(-q) + (i * i - i) / (2 * sigma * sigma);
    logA = logAdd(logA, s);
  }
  return logA;
}

function logAFractionalOrder(q: number, sigma: number, alpha: number): number {
  let logA0 = -Infinity;
  let logA1 = -Infinity;
  const z0 = sigma * sigma * Math.log(1 / q - 1) + 0.5;
  let coef = 1; // binom(alpha, i) for real alpha, built incrementally
  for (let i = 0; ; i++) {
    if (i > 0) coef *= (alpha - i + 1) / i;
    const logCoef = Math.log(Math.abs(coef));
    const j = alpha - i;
    const logT0 = logCoef + i * Math.log(q) + j * Math.log1p(-q);
    const logT1 = logCoef + j * Math.log(q) + i * Math.log1p(-q);
    const logE0 = Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * sigma));
    const logE1 = Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * sigma));
    const logS0 = logT0 + (i * i - i) / (2 * sigma * sigma) + logE0;
    const logS1 = logT1 + (j * j - j) / (2 * sigma * sigma) + logE1;
    if (coef > 0) {
      logA0 = logAdd(logA0, logS0);
      logA1 = logAdd(logA1, logS1);
    } else {
      logA0 = logSub(logA0, logS0);
      logA1 = logSub(logA1, logS1);
    }
    if (Math.max(logS0, logS1) < -30) break;
    if (i > 100000) throw new PrivacyAccountingError(`RDP series did not converge for q=${q}, sigma=${sigma}, alpha=${alpha}`);
  }
  return logAdd(logA0, logA1);
}

/** RDP of ONE application of the Poisson-sampled Gaussian mechanism at `order`. */
export function sampledGaussianRdp(sampleRate: number, noiseMultiplier: number, order: number): number {
  if (!(sampleRate >= 0 && sampleRate <= 1)) throw new PrivacyConfigError("sampleRate", "a number in [0, 1]", sampleRate);
  if (!(noiseMultiplier >= 0)) throw new PrivacyConfigError("noiseMultiplier", "a number >= 0", noiseMultiplier);
  if (!(order > 1)) throw new PrivacyConfigError("order", "a number > 1", order);
  if (sampleRate === 0) return 0;
  if (noiseMultiplier === 0) return Infinity;
  if (sampleRate === 1) return order / (2 * noiseMultiplier * noiseMultiplier);
  if (order === Infinity) return Infinity;
  const logA = Number.isInteger(order) ? logAIntegerOrder(sampleRate, noiseMultiplier, order) : logAFractionalOrder(sampleRate, noiseMultiplier, order);
  return logA / (order - 1);
}

/** RDP at every order after `steps` compositions. */
export function computeRdp(args: { sampleRate: number; noiseMultiplier: number; steps: number; orders?: readonly number[] }): number[] {
  const orders = args.orders ?? DEFAULT_RDP_ORDERS;
  return orders.map((a) => args.steps * sampledGaussianRdp(args.sampleRate, args.noiseMultiplier, a));
}

/** Smallest epsilon over the orders for the given delta, and the order achieving it. */
export function epsilonFromRdp(args: { orders: readonly number[]; rdp: readonly number[]; delta: number; conversion?: RdpConversion }): { epsilon: number; order: number } {
  const { orders, rdp, delta } = args;
  const conversion = args.conversion ?? "balle2020";
  if (orders.length !== rdp.length) throw new PrivacyConfigError("rdp", `${orders.length} values (one per order)`, rdp.length);
  if (!(delta > 0 && delta < 1)) throw new PrivacyConfigError("dp.delta", "a number in (0, 1)", delta);
  let best = { epsilon: Infinity, order: NaN };
  for (let k = 0; k < orders.length; k++) {
    const a = orders[k];
    const r = rdp[k];
    if (!(r >= 0)) throw new PrivacyAccountingError(`RDP at order ${a} is ${r}; expected >= 0`);
    let eps: number;
    if (conversion === "mironov2017") {
      eps = r + Math.log(1 / delta) / (a - 1);
    } else if (delta * delta + Math.expm1(-r) > 0) {
      eps = 0; // delta >= sqrt(1 - exp(-r)): bounded via KL divergence alone (as dp_accounting)
    } else if (a > 1.01) {
      eps = r + Math.log1p(-1 / a) - Math.log(delta * a) / (a - 1);
    } else {
      eps = Infinity; // the improved bound is numerically unreliable this close to 1
    }
    if (eps < best.epsilon) best = { epsilon: eps, order: a };
  }
  return { epsilon: Math.max(0, best.epsilon), order: best.order };
}

export interface RdpAccountantState {
  orders: number[];
  rdp: number[];
  /** number of mechanism applications composed so far */
  steps: number;
}

/** Cumulative RDP over rounds; plain serializable state for checkpoints. */
export class RdpAccountant {
  private readonly orders: number[];
  private readonly rdp: number[];
  private steps: number;

  constructor(state?: Partial<RdpAccountantState>) {
    this.orders = [...(state?.orders ?? DEFAULT_RDP_ORDERS)];
    this.rdp = state?.rdp ? [...state.rdp] : this.orders.map(() => 0);
    this.steps = state?.steps ?? 0;
    if (this.rdp.length !== this.orders.length) {
      throw new PrivacyAccountingError(`accountant state has ${this.rdp.length} RDP values for ${this.orders.length} orders`);
    }
  }

  /** Adds `steps` applications of the sampled Gaussian mechanism. */
  compose(args: { noiseMultiplier: number; sampleRate?: number; steps?: number }): void {
    const steps = args.steps ?? 1;
    const add = computeRdp({ sampleRate: args.sampleRate ?? 1, noiseMultiplier: args.noiseMultiplier, steps, orders: this.orders });
    for (let k = 0; k < add.length; k++) this.rdp[k] += add[k];
    this.steps += steps;
  }

  epsilon(delta: number, conversion: RdpConversion = "balle2020"): { epsilon: number; order: number } {
    if (this.steps === 0) return { epsilon: 0, order: NaN };
    return epsilonFromRdp({ orders: this.orders, rdp: this.rdp, delta, conversion });
  }

  toJSON(): RdpAccountantState {
    return { orders: [...this.orders], rdp: [...this.rdp], steps: this.steps };
  }

  static fromJSON(state: RdpAccountantState): RdpAccountant {
    return new RdpAccountant(state);
  }
}
