import type { ContentBlock } from '@modelcontextprotocol/sdk/types.js';
import { cutOutput, type ToolOutcome } from '../tools.ts';

/** What tools/call answers, as far as the model is told. */
interface CallResult {
  content?: ContentBlock[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
}

/**
 * An MCP tool's result as the model gets it: its text content joined, other
 * content described in a line (an image's type and size, a resource's URI),
 * the structured content as JSON when there is no content; `isError` is a
 * failed call. Cut at the loop's output limit like a built-in tool's.
 */
export function toolOutput(result: CallResult): ToolOutcome {
  const blocks = (result.content ?? []).map(describe);
  let text = blocks.join('\n');
  if (blocks.length === 0)
    text = result.structuredContent === undefined ? '(no content)' : JSON.stringify(result.structuredContent);
  return { ok: result.isError !== true, ...cutOutput(text, 'head') };
}

function describe(block: ContentBlock): string {
  switch (block.type) {
    case 'text':
      return block.text;
    case 'image':
    case 'audio':
      return `[${block.type} content (${block.mimeType}, ${base64Bytes(block.data)} bytes), not shown]`;
    case 'resource_link':
      return `[resource link: ${block.uri}${block.name ? ` (${block.name})` : ''}]`;
    case 'resource': {
      const r = block.resource;
      if ('text' in r && typeof r.text === 'string') return r.text;
      const size = 'blob' in r && typeof r.blob === 'string' ? `, ${base64Bytes(r.blob)} bytes` : '';
      return `[resource ${r.uri}${r.mimeType ? ` (${r.mimeType}${size})` : size ? ` (${size.slice(2)})` : ''}, not shown]`;
    }
    default:
      return `[${(block as { type: string }).type} content, not shown]`;
  }
}

/** The byte length of base64 data. */
function base64Bytes(data: string): number {
  return Buffer.byteLength(data, 'base64');
}
