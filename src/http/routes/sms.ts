/**
 * POST /v1/incidents/:codename/sms (SPEC §4), and Twilio's inbound webhook
 * POST /webhooks/twilio/sms, which lives outside /v1 because Twilio
 * authenticates with X-Twilio-Signature rather than a bearer token.
 */
import express, { Router, type Request } from 'express';
import twilio from 'twilio';
import type { RelayContext } from '../../context.js';
import { RelayError } from '../../errors.js';
import { authorizeIncident } from '../../services/incidents.js';
import { receiveInboundSms, sendNudges } from '../../services/sms.js';
import { parseInput } from '../../validation.js';
import { callerOf, param } from '../auth.js';
import { MAX_FORM_FIELDS, methodNotAllowed } from '../errors.js';
import { SendSms } from '../schemas.js';
import { idempotencyKey } from './emails.js';

/** The nudge route, mounted behind /v1 authentication. */
export function smsRoutes(ctx: RelayContext): Router {
  const router = Router();
  router
    .route('/v1/incidents/:codename/sms')
    .post(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'));
      const input = parseInput(SendSms, req.body);
      const accepted = await sendNudges(ctx, caller, incident, { to: input.to, body: input.body }, { via: 'http', idempotencyKey: idempotencyKey(req) });
      res.status(202).json(accepted);
    })
    .all(methodNotAllowed);
  return router;
}

export const TWILIO_WEBHOOK_PATH = '/webhooks/twilio/sms';

/**
 * The URLs Twilio may have signed for this request: the Host header and path
 * as received, with the request's scheme and with https, since TLS usually
 * ends at a proxy in front of the relay. The proxy must pass Host unchanged.
 */
export function signedUrlCandidates(req: Request): string[] {
  const host = req.get('host');
  if (host === undefined || host === '') return [];
  return [...new Set([req.protocol, 'https'])].map((scheme) => `${scheme}://${host}${req.originalUrl}`);
}

const MESSAGE_SID = /^(SM|MM)[0-9a-f]{32}$/i;

/** POST /webhooks/twilio/sms: Twilio's inbound-message webhook (404 when Twilio is not configured). */
export function twilioWebhookRoutes(ctx: RelayContext): Router {
  const router = Router();
  router.use(TWILIO_WEBHOOK_PATH, (_req, _res, next) => {
    if (!ctx.config.twilio) throw new RelayError('not_found', 'Twilio is not configured on this relay, so it takes no inbound SMS (README, "Inbound replies: POST /webhooks/twilio/sms").');
    next();
  });
  router
    .route(TWILIO_WEBHOOK_PATH)
    // Form-encoded, as Twilio posts it; only this route parses that format.
    .post(express.urlencoded({ extended: false, limit: '64kb', parameterLimit: MAX_FORM_FIELDS, type: 'application/x-www-form-urlencoded' }), async (req, res) => {
      const twilioConfig = ctx.config.twilio!;
      const params = (req.body ?? {}) as Record<string, unknown>;
      const signature = req.get('x-twilio-signature') ?? '';
      const valid = signature !== '' && signedUrlCandidates(req).some((url) => twilio.validateRequest(twilioConfig.authToken, signature, url, params));
      if (!valid) {
        // Never the parameters: they hold the message text.
        ctx.logger.warn({ path: req.path }, 'inbound SMS webhook with a missing or bad X-Twilio-Signature');
        throw new RelayError('forbidden', 'X-Twilio-Signature does not match this request. Configure the webhook URL in Twilio exactly as the relay is reached, and pass the Host header through any proxy (README, "Inbound replies: POST /webhooks/twilio/sms").');
      }
      const from = typeof params['From'] === 'string' ? params['From'] : '';
      const sid = typeof params['MessageSid'] === 'string' && MESSAGE_SID.test(params['MessageSid']) ? params['MessageSid'] : undefined;
      const reply = await receiveInboundSms(ctx, { from, messageSid: sid });
      const twiml = new twilio.twiml.MessagingResponse();
      if (reply.nudge !== undefined) twiml.message(reply.nudge);
      res.status(200).type('text/xml').send(twiml.toString());
    })
    .all(methodNotAllowed);
  return router;
}
