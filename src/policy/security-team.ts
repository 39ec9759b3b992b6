/**
 * Rule `security-team` (SPEC §8), shared by the email and SMS policies: the
 * playbook says the security team should always be included, so nothing is
 * sent for an incident until at least one active member has role `security`.
 * Pure: the caller counts the members.
 */
import { RelayError } from '../errors.js';
import { fail, pass, type RuleOutcome } from './decision.js';

/** How many members of `roster` (its active members) have role security: what the rule counts. */
export function securityMemberCount(roster: ReadonlyArray<{ role: string }>): number {
  return roster.filter((m) => m.role === 'security').length;
}

/** The rule's outcome for an incident with `securityMembers` active security members, and the refusal when there are none. */
export function checkSecurityTeam(securityMembers: number, what: 'email' | 'SMS'): { outcome: RuleOutcome; error?: RelayError } {
  if (securityMembers > 0) return { outcome: pass('security-team', `${securityMembers} active security member(s) on the roster`) };
  return {
    outcome: fail('security-team', 'no active member with role security on the roster'),
    error: new RelayError(
      'security_team_missing',
      `No ${what} is sent for this incident until a member with role security is on its roster: the security team is always included. Nothing was sent; a commander or deputy adds one with PUT /v1/incidents/:codename/roster/:email {"name": "…", "role": "security"}, or an admin sets RELAY_SECURITY_TEAM so every new incident starts with them.`,
      { rule: 'security-team' },
    ),
  };
}
