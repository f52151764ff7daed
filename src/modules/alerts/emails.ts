import { escapeHtml } from '../mail/html.ts';
import type { OutgoingMail } from '../mail/service.ts';
import type { AlertFiringRow } from './repo.ts';

// The words of an alert's e-mail: the rule, what was measured, and where to read the firing.

function measured(f: AlertFiringRow): string {
  const e = f.evidence;
  const unit = e.unit === 'percent' ? '%' : e.unit === 'usd' ? ' USD' : ` ${e.unit}`;
  return `${e.value}${unit} (threshold ${e.threshold}${unit}) between ${e.window_start} and ${e.window_end}`;
}

export function alertMail(base: string, to: string, firing: AlertFiringRow): OutgoingMail {
  const url = `${base.replace(/\/+$/, '')}/v1/alert-rules/${firing.ruleId}/firings`;
  const lines = [
    `The alert rule "${firing.ruleName}" (${firing.conditionType}) of the team ${firing.teamId} fired at ${firing.firedAt.toISOString()}.`,
    `Measured: ${measured(firing)}${firing.agentId ? `, agent ${firing.agentId}` : ''}.`,
    `Evidence: ${JSON.stringify(firing.evidence)}`,
  ];
  return {
    to,
    kind: 'alert',
    subject: `[Paddock alert] ${firing.ruleName}`,
    text: [...lines, '', `The rule's firings: ${url}`].join('\n'),
    html: [
      ...lines.map((l) => `<p>${escapeHtml(l)}</p>`),
      `<p><a href="${escapeHtml(url)}">The rule's firings</a></p>`,
    ].join('\n'),
  };
}
