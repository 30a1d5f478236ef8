"""The fixed words of a report, in Russian and English, and how numbers are written.

Question and choice labels come from the questionnaire; everything else a report says
by itself -- section titles, column headers, the methodology's sentences -- is here,
once per language. Numbers follow each language's typography: ``45,2`` in Russian,
``45.2`` in English; an en dash joins interval ends (``41,0–49,5``); a minus sign (U+2212)
starts negative differences.

>>> t("total", "ru"), t("total", "en"), t("total", "de")
('Всего', 'Total', 'Total')
>>> pct(0.4517, "ru"), pct(0.4517, "en"), interval(0.41, 0.495, "ru")
('45,2', '45.2', '41,0–49,5')
>>> points(-0.031, "en"), count(2000, "ru"), count(2000, "en")
('−3.1', '2 000', '2,000')
>>> p_value(0.0004, "en"), p_value(0.0234, "ru")
('<0.001', '0,023')
"""

from __future__ import annotations

import math

LANGUAGES = ("ru", "en")

MINUS = "−"  # U+2212
DASH = "–"  # U+2013, between interval ends
SUPPRESSED = "—"  # U+2014, a value not shown
NARROW_SPACE = " "  # U+202F, groups of thousands in Russian

STRINGS: dict[str, dict[str, str]] = {
    # sections
    "methodology": {"ru": "Методология", "en": "Methodology"},
    "weighting": {"ru": "Взвешивание", "en": "Weighting"},
    "topline": {"ru": "Распределения ответов", "en": "Topline"},
    "banners": {"ru": "Таблицы сопряжённости", "en": "Banner tables"},
    "paired": {"ru": "До и после", "en": "Before and after"},
    "screening": {"ru": "Проверка ответов", "en": "Response screening"},
    "screening_intro": {
        "ru": "Правила проверки заданы заранее в файле {rules}. Исключено {excluded} из "
        "{n} анкет; отчёт построен по остальным {kept}.",
        "en": "The screening rules were set in advance in {rules}. {excluded} of {n} "
        "responses were excluded; the report uses the other {kept}.",
    },
    "screening_rules_table": {
        "ru": "Сколько анкет отметило каждое правило",
        "en": "What each rule flagged",
    },
    "screening_rule": {"ru": "Правило", "en": "Rule"},
    "screening_flagged": {"ru": "Отмечено", "en": "Flagged"},
    "screening_excluded": {"ru": "Исключено", "en": "Excluded"},
    "screening_only": {"ru": "Только этим правилом", "en": "By this rule only"},
    "screening_compare_table": {"ru": "Что меняет исключение", "en": "What excluding them changes"},
    "screening_all": {"ru": "Все, %", "en": "Everyone, %"},
    "screening_kept": {"ru": "Без исключённых, %", "en": "Without the excluded, %"},
    "screening_diff": {"ru": "Разница, п.п.", "en": "Difference, points"},
    "screening_ci": {"ru": "95% ДИ разницы", "en": "95% CI of the difference"},
    "screening_p": {"ru": "p", "en": "p"},
    "screening_note": {
        "ru": "Разница: все минус оставшиеся, без весов; её стандартная ошибка учитывает, "
        "что оставшиеся входят во всех (линеаризация).",
        "en": "Difference: everyone minus those kept, unweighted; its standard error "
        "accounts for those kept being part of everyone (linearization).",
    },
    "benchmarks": {"ru": "Сравнение с внешними данными", "en": "Benchmarks"},
    "waves": {"ru": "Сравнение волн", "en": "Waves"},
    # column headers
    "answer": {"ru": "", "en": ""},
    "percent": {"ru": "%", "en": "%"},
    "ci": {"ru": "{level}% ДИ", "en": "{level}% CI"},
    "n": {"ru": "n", "en": "n"},
    "total": {"ru": "Всего", "en": "Total"},
    "base": {"ru": "База (n)", "en": "Base (n)"},
    "mean": {"ru": "Среднее", "en": "Mean"},
    "median": {"ru": "Медиана", "en": "Median"},
    "before": {"ru": "До, %", "en": "Before, %"},
    "after": {"ru": "После, %", "en": "After, %"},
    "change": {"ru": "Изменение, п. п.", "en": "Change, pp"},
    "difference": {"ru": "Разница, п. п.", "en": "Difference, pp"},
    "p": {"ru": "p", "en": "p"},
    "ours": {"ru": "Наша оценка, %", "en": "Our estimate, %"},
    "benchmark": {"ru": "Внешние данные, %", "en": "Benchmark, %"},
    "item": {"ru": "Пункт", "en": "Item"},
    "value": {"ru": "Значение", "en": "Value"},
    "statistic": {"ru": "Показатель", "en": "Statistic"},
    "before_weighting": {"ru": "До взвешивания", "en": "Before weighting"},
    "after_weighting": {"ru": "После взвешивания", "en": "After weighting"},
    "margin": {"ru": "Распределение", "en": "Margin"},
    "cell": {"ru": "Ячейка", "en": "Cell"},
    "target_pct": {"ru": "Цель, %", "en": "Target, %"},
    "before_pct": {"ru": "До, %", "en": "Before, %"},
    "after_pct": {"ru": "После, %", "en": "After, %"},
    "step": {"ru": "Шаг", "en": "Step"},
    "converged": {"ru": "Сошёлся", "en": "Converged"},
    "iterations": {"ru": "Итераций", "en": "Iterations"},
    "max_error": {"ru": "Наибольшая ошибка", "en": "Largest error"},
    "yes": {"ru": "да", "en": "yes"},
    "no": {"ru": "нет", "en": "no"},
    "wave": {"ru": "эта волна", "en": "this wave"},
    # table titles
    "weights_table": {
        "ru": "Веса до и после взвешивания",
        "en": "The weights before and after weighting",
    },
    "margins_table": {
        "ru": "Состав выборки и целевые распределения",
        "en": "Sample make-up against the margins",
    },
    "steps_table": {"ru": "Шаги взвешивания", "en": "Weighting steps"},
    "disclosure_table": {
        "ru": "Сведения об исследовании (AAPOR)",
        "en": "About the study (AAPOR disclosure)",
    },
    "benchmarks_table": {
        "ru": "Наши оценки и внешние данные",
        "en": "Our estimates against external figures",
    },
    "mean_of": {"ru": "{label}: среднее и медиана", "en": "{label}: mean and median"},
    # AAPOR items
    "sponsor": {"ru": "Заказчик", "en": "Sponsor"},
    "conducted_by": {"ru": "Исполнитель", "en": "Conducted by"},
    "population": {"ru": "Генеральная совокупность", "en": "Population"},
    "sample": {"ru": "Выборка и привлечение респондентов", "en": "Sample and recruitment"},
    "mode": {"ru": "Способ опроса", "en": "Mode"},
    "fieldwork": {"ru": "Сроки полевого этапа", "en": "Fieldwork dates"},
    "questionnaire": {"ru": "Анкета", "en": "Questionnaire"},
    "respondents": {"ru": "Респондентов", "en": "Respondents"},
    "weighting_item": {"ru": "Взвешивание", "en": "Weighting"},
    "design_effect": {"ru": "Эффект дизайна (Киш)", "en": "Design effect (Kish)"},
    "effective_n": {"ru": "Эффективный размер выборки", "en": "Effective sample size"},
    "variance": {"ru": "Оценка дисперсии", "en": "Variance estimation"},
    "intervals": {"ru": "Доверительные интервалы", "en": "Confidence intervals"},
    "tests": {"ru": "Проверка значимости", "en": "Significance tests"},
    "rules_item": {"ru": "Правила публикации", "en": "Publication rules"},
    "limitations": {"ru": "Ограничения", "en": "Limitations"},
    "data": {"ru": "Данные", "en": "Data"},
    "not_stated": {"ru": "не указано", "en": "not stated"},
    # sentences
    "questionnaire_text": {
        "ru": (
            "{questions} вопросов; языки: {languages}. Формулировки вопросов приведены у каждой "
            "таблицы."
        ),
        "en": (
            "{questions} questions; languages: {languages}. Each table gives the question's "
            "wording."
        ),
    },
    "respondents_text": {
        "ru": "{n} респондентов в анализе.",
        "en": "{n} respondents analysed.",
    },
    "unweighted": {
        "ru": "Данные не взвешивались: каждый респондент учитывается с весом 1.",
        "en": "The data are not weighted: every respondent counts once.",
    },
    "base_weights": {
        "ru": "Базовые веса из столбца {column}.",
        "en": "Base weights from column {column}.",
    },
    "raked": {
        "ru": (
            "Веса подогнаны итеративной пропорциональной подгонкой (рейкинг) к распределениям: "
            "{margins}."
        ),
        "en": (
            "The weights were raked (iterative proportional fitting) to these margins: {margins}."
        ),
    },
    "poststratified": {
        "ru": "Веса получены постстратификацией по распределениям: {margins}.",
        "en": "The weights were post-stratified to these margins: {margins}.",
    },
    "trimmed": {
        "ru": "Веса ограничены сверху {times} средними с сохранением распределений.",
        "en": "The weights were capped at {times} times their mean, keeping the margins.",
    },
    "illustrative": {"ru": "иллюстративное", "en": "illustrative"},
    "margin_source": {
        "ru": "{name} ({publisher}, на {date}{illustrative})",
        "en": "{name} ({publisher}, as of {date}{illustrative})",
    },
    "deff_text": {
        "ru": "Эффект дизайна из-за весов по Кишу {deff}; эффективный размер выборки {ess} из {n}.",
        "en": (
            "Kish's design effect due to weighting is {deff}; the effective sample size is {ess} "
            "of {n}."
        ),
    },
    "variance_text_clusters": {
        "ru": (
            "Стандартные ошибки получены линеаризацией с учётом кластеров ({clusters}: {psus}) "
            "{strata}и взвешивания; число степеней свободы дизайна {df}."
        ),
        "en": (
            "Standard errors by linearization, taking account of the clusters ({clusters}: {psus}) "
            "{strata}and of the weighting; the design has {df} degrees of freedom."
        ),
    },
    "variance_text_replicates": {
        "ru": (
            "Стандартные ошибки по {count} репликационным весам ({type}), каждый взвешен так же, "
            "как основной вес; число степеней свободы {df}."
        ),
        "en": (
            "Standard errors from {count} replicate weights ({type}), each weighted as the "
            "full-sample weight; {df} degrees of freedom."
        ),
    },
    "variance_text": {
        "ru": "Стандартные ошибки получены линеаризацией с учётом {strata}взвешивания.",
        "en": "Standard errors by linearization, taking account of {strata}the weighting.",
    },
    "strata_text": {"ru": "страт ({strata}) и ", "en": "the strata ({strata}) and "},
    "intervals_text": {
        "ru": (
            "{level}%-ные интервалы для долей — {method}; для средних — нормальные; для медиан — "
            "по Вудраффу. Интервалы для неслучайной выборки опираются на модель: они "
            "предполагают, что взвешенная выборка представляет совокупность."
        ),
        "en": (
            "{level}% intervals: {method} for proportions, normal for means, Woodruff for "
            "medians. For a non-probability sample the intervals rest on a model: they assume "
            "that the weighted sample represents the population."
        ),
    },
    "tests_text": {
        "ru": (
            "Двусторонние тесты с учётом дизайна выборки (ковариация оценок по одному дизайну), "
            "уровень {alpha}, {correction}."
        ),
        "en": (
            "Two-sided design-based tests (with the covariance of estimates from one design), "
            "at the {alpha} level, {correction}."
        ),
    },
    "synthetic_notice": {
        "ru": (
            "Данные синтетические: ни один ответ не принадлежит реальному человеку. Отчёт "
            "показывает, как работает volna, а не выводы о реальной эмиграции."
        ),
        "en": (
            "The data are synthetic: no answer belongs to a real person. The report shows "
            "how volna works, not findings about the real emigration."
        ),
    },
    "real_data": {"ru": "Ответы респондентов", "en": "Respondents' answers"},
    "dates": {"ru": "{start} — {end}", "en": "{start} to {end}"},
    # notes
    "base_note": {
        "ru": "База: ответившие на вопрос; n — число респондентов без взвешивания.",
        "en": "Base: those who answered the question; n is the unweighted number of respondents.",
    },
    "multi_note": {
        "ru": "Можно было выбрать несколько ответов: сумма может превышать 100%.",
        "en": "Several answers were possible: percentages may add up to more than 100.",
    },
    "scale_mean_note": {
        "ru": "Среднее по шкале {low}–{high} без ответов «{missing}».",
        "en": "Mean on the {low}–{high} scale, leaving out “{missing}”.",
    },
    "scale_mean_note_plain": {
        "ru": "Среднее по шкале {low}–{high}.",
        "en": "Mean on the {low}–{high} scale.",
    },
    "letters_note": {
        "ru": (
            "Буквы: значение значимо выше, чем в столбце с этой буквой той же группы "
            "(p < {alpha}, {correction} по парам столбцов строки)."
        ),
        "en": (
            "Letters: significantly higher than the column of the same group with that letter "
            "(p < {alpha}, {correction} over the pairs of columns of the row)."
        ),
    },
    "no_cov_note": {
        "ru": (
            "Ковариация столбцов не вычислялась (слишком много оценок): тесты считают столбцы "
            "независимыми."
        ),
        "en": (
            "The covariance of the columns was not computed (too many estimates): the tests treat "
            "the columns as independent."
        ),
    },
    "zero_variance_note": {
        "ru": (
            "Доли, которые задаёт взвешивание, не имеют выборочной ошибки: интервал не показан (—)."
        ),
        "en": "Shares the weighting sets have no sampling error: no interval is shown (—).",
    },
    "source_notes": {
        "ru": "Пояснения источников приводятся на английском, как в файле внешних данных.",
        "en": "The sources' notes are given in English, as in the benchmarks file.",
    },
    "rule_note": {"ru": "{rule} ({count})", "en": "{rule} ({count})"},
    "rules_fired": {"ru": "Сработавшие правила: {rules}.", "en": "Rules that fired: {rules}."},
    "paired_note": {
        "ru": (
            "Изменение — среднее разностей «после минус до» у ответивших на оба вопроса, "
            "с {level}%-ным интервалом и двусторонним p ({correction} по строкам таблицы)."
        ),
        "en": (
            "Change: the mean of after minus before over those who answered both, with its "
            "{level}% interval and two-sided p ({correction} over the rows of the table)."
        ),
    },
    "benchmark_note": {
        "ru": (
            "Наша оценка — доля среди ответивших, для которых вопрос сопоставим с внешними "
            "данными; разница — наша оценка минус внешняя, тест нормальный; внешние данные "
            "описывают другую совокупность, это контраст, а не проверка точности."
        ),
        "en": (
            "Our estimate is the share among those answering comparably to the benchmark; the "
            "difference is ours minus the benchmark, with a normal test. The benchmarks describe "
            "another population: a contrast, not a check of accuracy."
        ),
    },
    "waves_note": {
        "ru": "Волны — независимые выборки: разница с {level}%-ным интервалом и двусторонним p.",
        "en": (
            "Waves are independent samples: the difference with its {level}% interval and "
            "two-sided p."
        ),
    },
    "weights_intro": {
        "ru": "Как взвешивание изменило веса и состав выборки.",
        "en": "What weighting did to the weights and to the sample's make-up.",
    },
    "topline_intro": {
        "ru": (
            "Взвешенные доли ответов с {level}%-ными интервалами и числом респондентов без "
            "взвешивания."
        ),
        "en": "Weighted percentages with {level}% intervals and unweighted numbers of respondents.",
    },
    "banners_intro": {
        "ru": "Каждый вопрос в разрезе: {banners}. Проценты по столбцам; последняя строка — база.",
        "en": "Each question by {banners}. Column percentages; the last row is the base.",
    },
    "association_table": {
        "ru": "Связь вопросов с группами: p-значения теста Рао–Скотта",
        "en": "Association of each question with the groups: Rao–Scott p-values",
    },
    "association_note": {
        "ru": (
            "p — тест независимости вопроса и группы с поправкой Рао–Скотта второго порядка "
            "(F), учитывающей дизайн выборки ({df} степеней свободы дизайна); без поправки на "
            "множественные сравнения."
        ),
        "en": (
            "p: test of independence of the question and the group, Pearson's X² with the "
            "Rao–Scott second-order correction for the design (F, {df} design degrees of "
            "freedom); not corrected for multiple comparisons."
        ),
    },
    "test_unreliable": {"ru": "ненадёжно", "en": "unreliable"},
    "test_unreliable_note": {
        "ru": (
            "Ненадёжные тесты: p не показано. Для такой большой таблицы в выборке слишком мало "
            "кластеров (первичных единиц отбора): степеней свободы дизайна ({df}) не больше, "
            "чем свободных ячеек таблицы ((строки − 1) × (столбцы − 1)), либо пустые ячейки "
            "не позволяют оценить эффекты дизайна. Такой тест нельзя считать надёжным."
        ),
        "en": (
            "Unreliable tests: no p-value is shown. The sample has too few clusters (primary "
            "sampling units) for the size of the table: the design degrees of freedom ({df}) "
            "are no more than its free cells ((rows − 1) × (columns − 1)), or empty cells "
            "leave design effects that cannot be estimated. Such a test cannot be trusted."
        ),
    },
    "paired_intro": {
        "ru": "Одни и те же респонденты отвечали о двух периодах.",
        "en": "The same respondents answered about two periods.",
    },
    "benchmarks_intro": {
        "ru": "Оценки по опросу рядом с опубликованными данными о населении России.",
        "en": "Survey estimates next to published figures about the population of Russia.",
    },
    "waves_intro": {
        "ru": "Распределения ответов в волнах: {waves}.",
        "en": "Answers in the waves: {waves}.",
    },
    "models": {"ru": "Регрессионные модели", "en": "Regression models"},
    "models_intro": {
        "ru": (
            "Логистические (и другие) модели со стандартными ошибками с учётом дизайна "
            "выборки. Для категориальных переменных сравнение идёт с первой категорией."
        ),
        "en": (
            "Logistic (and other) models with design-based standard errors. Categorical "
            "predictors are compared with their first category."
        ),
    },
    "model_term": {"ru": "Переменная", "en": "Term"},
    "odds_ratio": {"ru": "Отношение шансов", "en": "Odds ratio"},
    "rate_ratio": {"ru": "Отношение частот", "en": "Rate ratio"},
    "coefficient": {"ru": "Коэффициент", "en": "Coefficient"},
    "ci_low": {"ru": "{level}% ДИ: от", "en": "{level}% CI: low"},
    "ci_high": {"ru": "{level}% ДИ: до", "en": "{level}% CI: high"},
    "model_flag": {"ru": "Проблемы", "en": "Problems"},
    "intercept": {"ru": "Константа", "en": "Intercept"},
    "model_note": {
        "ru": (
            "n = {n} респондентов в модели (без ответа на вопросы модели: {missing}); "
            "степени свободы дизайна: {df}; {family}; стандартные ошибки: {method}; "
            "интервалы по t-распределению."
        ),
        "en": (
            "n = {n} respondents in the model ({missing} without an answer to one of its "
            "questions); design degrees of freedom: {df}; {family}; standard errors: "
            "{method}; intervals from the t distribution."
        ),
    },
    "model_response": {
        "ru": "Зависимая переменная: {response}.",
        "en": "Outcome: {response}.",
    },
    "model_group": {
        "ru": "{question} (по сравнению с: {reference})",
        "en": "{question} (compared with: {reference})",
    },
    "model_aliased": {
        "ru": "не оценивается: линейно зависит от других переменных",
        "en": "not estimable: collinear with other terms",
    },
    "model_replicates_dropped": {
        "ru": "часть репликаций не сошлась и исключена из оценки дисперсии",
        "en": "some replicate refits failed and were left out of the variance",
    },
    "model_separation": {
        "ru": "предсказанные вероятности 0 или 1 (полное разделение)",
        "en": "fitted probabilities of 0 or 1 (separation)",
    },
    "model_no_df": {
        "ru": "нет степеней свободы для интервалов",
        "en": "no degrees of freedom for intervals",
    },
    "method_linearization": {"ru": "линеаризация", "en": "linearization"},
    "method_replicates": {
        "ru": "репликационные веса {type} ({n})",
        "en": "{type} replicate weights ({n})",
    },
    "family_logistic": {"ru": "логистическая модель", "en": "logistic model"},
    "family_linear": {"ru": "линейная модель", "en": "linear model"},
    "family_poisson": {"ru": "модель Пуассона", "en": "Poisson model"},
    "map_title": {"ru": "{label} (карта)", "en": "{label} (map)"},
    "chart_caption": {
        "ru": "Взвешенные доли, {level}%-ные интервалы; n = {n}. {source}",
        "en": "Weighted percentages, {level}% intervals; n = {n}. {source}",
    },
}


def t(key: str, lang: str, **kwargs: object) -> str:
    """A fixed string in ``lang`` (English when the language is not known), formatted.

    >>> t("ci", "ru", level=95)
    '95% ДИ'
    """
    entry = STRINGS[key]
    text = entry.get(lang) if lang in entry else entry["en"]
    return text.format(**kwargs) if kwargs else text


def _decimal(text: str, lang: str) -> str:
    return text.replace(".", ",") if lang == "ru" else text


def number(x: float | None, lang: str, digits: int = 1) -> str:
    """A number with ``digits`` decimals in the language's style; ``—`` when missing.

    >>> number(3.14159, "ru", 2), number(float("nan"), "en")
    ('3,14', '—')
    """
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return SUPPRESSED
    text = f"{abs(x):.{digits}f}"
    sign = MINUS if x < 0 and float(text) != 0 else ""
    return sign + _decimal(text, lang)


def pct(p: float | None, lang: str, digits: int = 1) -> str:
    """A proportion as a percentage (no % sign): ``0.452 -> 45.2``."""
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return SUPPRESSED
    return number(100 * p, lang, digits)


def points(d: float | None, lang: str, digits: int = 1) -> str:
    """A difference of proportions in percentage points, signed: ``+3.1``, ``−3.1``."""
    if d is None or (isinstance(d, float) and not math.isfinite(d)):
        return SUPPRESSED
    text = number(100 * d, lang, digits)
    return text if text.startswith(MINUS) or float(f"{100 * d:.{digits}f}") == 0 else "+" + text


def interval(
    low: float | None, high: float | None, lang: str, digits: int = 1, scale: float = 100
) -> str:
    """An interval ``a–b`` (percent by default; ``scale=1`` for values as they are)."""
    if low is None or high is None:
        return SUPPRESSED
    if not (math.isfinite(low) and math.isfinite(high)):
        return SUPPRESSED
    return f"{number(scale * low, lang, digits)}{DASH}{number(scale * high, lang, digits)}"


def count(n: int | float | None, lang: str) -> str:
    """A whole number with groups of thousands: ``2 000`` (ru, narrow space), ``2,000`` (en)."""
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return SUPPRESSED
    text = f"{round(n):,}"
    return text.replace(",", NARROW_SPACE) if lang == "ru" else text


def p_value(p: float | None, lang: str) -> str:
    """A p-value with three decimals, ``<0.001`` below that."""
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return SUPPRESSED
    if p < 0.001:
        return "<" + _decimal("0.001", lang)
    return _decimal(f"{p:.3f}", lang)


def parse_number(text: str) -> float | None:
    """The number a displayed cell starts with (either decimal mark), or None.

    Handles the minus sign, ``+``, narrow-space thousands and trailing letters or marks:
    the inverse of the formatting above, for tests and readers of displayed tables.

    >>> parse_number("45,2 BC"), parse_number("−3.1"), parse_number("2 000"), parse_number("—")
    (45.2, -3.1, 2000.0, None)
    >>> parse_number("0,023"), parse_number("2,000"), parse_number("<0,001")
    (0.023, 2000.0, 0.001)
    """
    import re

    s = str(text).strip().replace(MINUS, "-").replace(NARROW_SPACE, "").replace("\u00a0", "")
    m = re.match(r"^[<>]?([+-]?\d[\d,]*(?:[.,]\d+)?)", s)
    if not m:
        return None
    token = m.group(1)
    if "." in token:
        token = token.replace(",", "")
    elif token.count(",") == 1 and (
        len(token.split(",")[1]) != 3 or token.lstrip("+-").startswith("0")
    ):
        token = token.replace(",", ".")
    else:
        token = token.replace(",", "")
    try:
        return float(token)
    except ValueError:
        return None
