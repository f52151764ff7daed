import { useQuery } from '@tanstack/react-query';
import { api, splitList, unwrap } from './api.ts';
import { TextField } from './ui.tsx';

/** The server's event types by noun (GET /v1/events/types), fetched once per session. */
function useEventTypes() {
  return useQuery({
    queryKey: ['event-types'],
    queryFn: () => unwrap(api.GET('/v1/events/types')),
    staleTime: Number.POSITIVE_INFINITY,
  });
}

function byNoun(types: readonly string[]): Array<[string, string[]]> {
  const groups = new Map<string, string[]>();
  for (const type of types) {
    const noun = type.slice(0, type.indexOf('.'));
    groups.set(noun, [...(groups.get(noun) ?? []), type]);
  }
  return [...groups];
}

/**
 * The events a webhook or a channel subscribes to: typed as a comma-separated
 * list, or picked from the server's types, a whole noun (`task.*`) or one by
 * one. Both edit the same text, so either way shows what will be sent.
 */
export function EventTypesField(props: {
  value: string;
  onChange: (value: string) => void;
  placeholder?: string;
}) {
  const types = useEventTypes();
  const chosen = splitList(props.value);
  const toggle = (type: string, on: boolean) =>
    props.onChange((on ? [...chosen, type] : chosen.filter((t) => t !== type)).join(', '));
  return (
    <>
      <TextField
        label="Events"
        required
        placeholder={props.placeholder}
        hint="Comma-separated event types, or noun.* for every event of a kind; or pick them below."
        value={props.value}
        onChange={(e) => props.onChange(e.target.value)}
      />
      {types.data ? (
        <details className="event-picker">
          <summary>Pick from the {types.data.data.length} event types</summary>
          {byNoun(types.data.data).map(([noun, list]) => {
            const all = `${noun}.*`;
            return (
              <fieldset key={noun} className="field">
                <legend>{noun}</legend>
                <div className="checks">
                  {[all, ...list].map((type) => (
                    <label key={type} className="check">
                      <input
                        type="checkbox"
                        checked={chosen.includes(type)}
                        disabled={type !== all && chosen.includes(all)}
                        onChange={(e) => toggle(type, e.target.checked)}
                      />{' '}
                      <code>{type === all ? `${all} (every ${noun} event)` : type}</code>
                    </label>
                  ))}
                </div>
              </fieldset>
            );
          })}
        </details>
      ) : null}
    </>
  );
}
