"""Forms of the operator's console."""
from __future__ import annotations

import json
from typing import Any

from django import forms

from incidents.engine import registry


class ReasonForm(forms.Form):
    reason = forms.CharField(required=False, max_length=2000,
                             widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
                             help_text="Kept with each incident.")
    confirmed = forms.CharField(widget=forms.HiddenInput, initial="yes")


class StartIncidentForm(forms.Form):
    kind = forms.ChoiceField(help_text="Kinds registered by the workflow modules.")
    name = forms.CharField(max_length=200)
    incident_date = forms.DateTimeField(required=False, help_text="Default: now. e.g. 2026-08-01 14:00")
    parameters = forms.CharField(required=False, initial="{}", widget=forms.Textarea(
        attrs={"rows": 4, "cols": 60}), help_text="A JSON object, sent to the kind's first handler.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [  # type: ignore[attr-defined]
            (k.kind, f"{k.kind} - {k.description}" if k.description else k.kind)
            for k in registry.known_kinds()]

    def clean_parameters(self) -> dict[str, Any]:
        text = self.cleaned_data["parameters"].strip() or "{}"
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge numbers, deep nesting
            raise forms.ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"size": 1000}.')
        return value

    def incident_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {"kind": data["kind"], "name": data["name"],
                "incident_date": data["incident_date"], "parameters": data["parameters"]}
