import { ButtonLink, Empty, Page } from '../ui.tsx';

export function NotFoundPage() {
  return (
    <Page title="Not found">
      <Empty title="There is no page here." action={<ButtonLink to="/">Go to the overview</ButtonLink>}>
        The address may be mistyped, or the thing it named was deleted.
      </Empty>
    </Page>
  );
}
