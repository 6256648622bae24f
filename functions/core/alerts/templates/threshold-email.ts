/**
 * The threshold email, in Handlebars. The HTML part escapes every value (`{{…}}`); the text part is
 * compiled without escaping. Values: workspace, usageType, threshold, used, allowance, remaining,
 * bonus, resetsAt, usageUrl.
 */

export const SUBJECT = 'You have used {{threshold}}% of your monthly {{usageType}}';

export const TEXT = `Hello,

{{workspace}} has used {{threshold}}% of its monthly {{usageType}} allowance: {{used}} of {{allowance}} {{usageType}} this billing cycle.

What remains: {{remaining}} {{usageType}}{{#if bonus}}, including {{bonus}} bonus and top-up credits{{/if}}.
The cycle resets on {{resetsAt}}.

See where your usage goes: {{usageUrl}}
`;

export const HTML = `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>You have used {{threshold}}% of your monthly {{usageType}}</title></head>
<body style="font-family: system-ui, sans-serif; color: #1a1a1a; line-height: 1.5">
  <h1 style="font-size: 20px">{{workspace}} has used {{threshold}}% of its monthly {{usageType}}</h1>
  <table role="presentation" style="border-collapse: collapse">
    <tr><th scope="row" style="text-align: left; padding-right: 16px">Used</th><td>{{used}} of {{allowance}} {{usageType}}</td></tr>
    <tr><th scope="row" style="text-align: left; padding-right: 16px">Remaining</th><td>{{remaining}} {{usageType}}{{#if bonus}} (including {{bonus}} bonus and top-up credits){{/if}}</td></tr>
    <tr><th scope="row" style="text-align: left; padding-right: 16px">Resets</th><td>{{resetsAt}}</td></tr>
  </table>
  <p><a href="{{usageUrl}}" style="color: #0b57d0">See where your usage goes</a></p>
</body>
</html>
`;
