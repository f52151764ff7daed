// Light or dark: the OS's choice unless the user picked one with the toggle
// (kept in localStorage). The stylesheet reads <html data-theme>.
export type Theme = 'light' | 'dark';

const KEY = 'paddock.theme';

export function chosenTheme(): Theme | null {
  const stored = localStorage.getItem(KEY);
  return stored === 'light' || stored === 'dark' ? stored : null;
}

export function currentTheme(): Theme {
  return chosenTheme() ?? (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light');
}

export function applyTheme(theme: Theme | null): void {
  if (theme) {
    localStorage.setItem(KEY, theme);
    document.documentElement.dataset['theme'] = theme;
  } else {
    localStorage.removeItem(KEY);
    delete document.documentElement.dataset['theme'];
  }
}
