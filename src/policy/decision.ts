/**
 * A policy decision is data: each rule's outcome with a reason, like Haraka's
 * per-plugin results. The audit log stores the list as it is.
 */
import type { RelayError, RuleId } from '../errors.js';

export type RuleResult = 'pass' | 'fail' | 'skip';

export interface RuleOutcome {
  rule: RuleId;
  result: RuleResult;
  reason: string;
}

/** Accept with a plan for the next stage, or refuse with the error of the first failed rule. */
export type Decision<Plan> =
  | { outcome: 'accept'; rules: RuleOutcome[]; plan: Plan }
  | { outcome: 'refuse'; rules: RuleOutcome[]; error: RelayError };

export const pass = (rule: RuleId, reason: string): RuleOutcome => ({ rule, result: 'pass', reason });
export const fail = (rule: RuleId, reason: string): RuleOutcome => ({ rule, result: 'fail', reason });
export const skip = (rule: RuleId, reason: string): RuleOutcome => ({ rule, result: 'skip', reason });
