"""Forms of the operator's console."""
from __future__ import annotations

import json
from typing import Any

from django import forms
from django.http import HttpRequest

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
    owner = forms.CharField(required=False, max_length=150,
                            help_text="Who owns it (CreateIncident's user_id). Default: you.")
    upper_left = forms.CharField(required=False, max_length=100, label="Upper-left corner",
                                 help_text="Of the area, latitude/longitude, e.g. 38.6/-120.5")
    lower_right = forms.CharField(required=False, max_length=100, label="Lower-right corner",
                                  help_text="Of the area, latitude/longitude, e.g. 38.1/-119.9")
    duration = forms.FloatField(required=False, min_value=0,
                                help_text="How long it runs (a number, e.g. hours).")

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

    def incident_arguments(self, user: str) -> dict[str, Any]:
        data = self.cleaned_data
        return {"kind": data["kind"], "name": data["name"],
                "incident_date": data["incident_date"], "parameters": data["parameters"],
                "owner": data["owner"] or user, "upper_left": data["upper_left"],
                "lower_right": data["lower_right"], "duration": data["duration"]}


def operator_name(request: HttpRequest) -> str:
    """Who did it, as operators' actions record it: "alice (admin)"."""
    return f"{request.user.get_username()} (admin)"
