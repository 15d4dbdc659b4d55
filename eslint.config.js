// ESLint flat config: typescript-eslint's recommended rules for the TypeScript sources, Node
// globals for the plain JavaScript entry points and scripts, and the layer boundaries of
// docs/architecture.md (scripts/eslint/layerBoundaries.mjs).
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';
import lk from './scripts/eslint/layerBoundaries.mjs';

export default tseslint.config(
  { ignores: ['node_modules/', 'data/', '.lk/', 'coverage/', 'dist/', '.scratch/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    plugins: { lk },
    rules: {
      'lk/layer-boundaries': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    rules: { '@typescript-eslint/consistent-type-imports': 'off' },
  },
);
