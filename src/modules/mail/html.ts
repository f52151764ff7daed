/** Text made safe inside an e-mail's HTML body (modules write their own words, mail carries them). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
