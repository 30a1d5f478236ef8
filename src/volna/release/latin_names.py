"""Given names in Latin script: English ones and Russian, Ukrainian, Belarusian, Georgian,
Armenian and Central Asian ones as they are usually transliterated.

natasha's NER reads Russian only; in Latin script a person is recognised by a
capitalised word from this list followed by another capitalised word ("John Smith",
"Ivan Petrov"), or by a capitalised pair ending in a surname suffix common in the region
("Petrov", "Ivanova", "Shevchenko", "Beridze"). Words that are also ordinary English words
("May", "Will", "Mark", "Rose", "Grace") are left out so that sentences stay untouched.
"""

from __future__ import annotations

import re

_NAMES = """
Aaron Adam Adrian Alan Albert Alex Alexander Alexandra Alexei Alexey Aleksandr Aleksandra
Aleksei Aleksey Alena Alice Alina Alisa Alla Amanda Amy Anastasia Anastasiya Anatoly Anatoliy
Andrei Andrey Andrew Andriy Angela Angelina Anna Anne Anton Antonina Anya Ara Arkady Arkadiy
Armen Arseniy Arseny Artem Artyom Arthur Artur Ashot Barbara Benjamin Bogdan Boris Brian
Carol Catherine Charles Charlotte Christina Christopher Daniel Daniil Daria Darya Dasha David
Davit Denis Dmitri Dmitrii Dmitriy Dmitry Dima Edward Egor Ekaterina Elena Elizabeth Elizaveta
Emily Emma Eric Eugene Evgenia Evgeniy Evgeny Fedor Fyodor Galina Gennady Gennadiy George
Georgy Georgiy Giorgi Gleb Gregory Grigory Grigoriy Hannah Helen Igor Ilya Inna Irina Iryna
Ivan Ivanna James Jane Jennifer Jessica John Joseph Julia Kamila Karen Katerina Katya
Kateryna Kevin Kirill Konstantin Ksenia Kseniya Laura Larisa Larissa Lev Liliya Lilia Linda
Lisa Liza Lyudmila Ludmila Lyubov Margarita Maria Mariya Marina Mary Masha Matthew Maxim
Maksim Mikhail Michael Milana Mykola Mykhailo Nadezhda Nadia Nancy Nastya Natalia Natalya
Nataliya Natasha Nikita Nikolai Nikolay Nina Oksana Oleg Oleh Olga Olena Oleksandr Oleksiy
Pavel Pavlo Paul Peter Petr Petro Polina Rachel Richard Robert Roman Ruslan Ryan Sarah
Semyon Sergei Sergey Serhiy Sofia Sofiya Sophia Stanislav Stepan Steven Susan Svetlana
Taras Tamara Tatiana Tatyana Thomas Timofey Timur Valentin Valentina Valeria Valeriya Valery
Vadim Vasily Vasiliy Vera Veronika Victoria Viktoria Viktor Vitaly Vitaliy Vladimir Vladislav
Vlad Volodymyr Vsevolod Vyacheslav Walter William Yana Yaroslav Yaroslava Yegor Yekaterina
Yelena Yevgeny Yevgeniy Yulia Yuliya Yuri Yuriy Yury Zakhar Zhanna Zoya Aigerim Aibek Aliya
Alibek Arman Askar Aziz Azamat Bakhyt Dilnoza Farida Gulnara Nurlan Rustam Saule Timurlan
Nino Tamar Tamari Levan Giorgi Irakli Nika Luka Lasha Zurab Gor Hayk Anahit Lilit Narek Tigran
"""

#: Given names, as written (capitalised).
GIVEN_NAMES = frozenset(_NAMES.split())

#: Surname endings frequent among Russian, Ukrainian, Belarusian, Georgian and Armenian
#: surnames; a capitalised pair ending in one is taken for a name.
SURNAME_ENDING = re.compile(
    r"(?:ov|ova|ev|eva|yov|yova|in|ina|yn|yna|sky|skiy|skii|skaya|ska|tsky|tskaya|enko|"
    r"chenko|uk|yuk|chuk|ich|vich|ovich|evich|ovna|evna|shvili|dze|ian|yan|uly|kyzy)$"
)

#: Words that precede a surname.
TITLES = frozenset({"Mr", "Mrs", "Ms", "Miss", "Dr", "Prof", "Professor"})

_RUSSIAN = """
Александр Александра Алексей Алена Алёна Алина Алиса Алла Анастасия Анатолий Андрей Анна
Антон Аня Аркадий Арсений Артём Артем Артур Богдан Борис Вадим Валентин Валентина Валерий
Валерия Варвара Василий Вася Вера Вероника Виктор Виктория Виталий Влад Владимир Владислав
Вова Володя Всеволод Вячеслав Галина Геннадий Георгий Глеб Григорий Даниил Данила Дарья Даша
Денис Дима Дмитрий Евгений Евгения Егор Екатерина Елена Елизавета Женя Жанна Захар Зоя Иван
Игорь Илья Инна Ирина Ира Катя Кирилл Константин Костя Ксения Лариса Лев Лена Лиза Лилия
Любовь Людмила Марина Мария Маргарита Маша Максим Михаил Миша Надежда Надя Настя Наталья
Наталия Наташа Никита Николай Коля Нина Оксана Олег Ольга Оля Павел Паша Петр Пётр Петя
Полина Роман Рома Руслан Светлана Света Семён Семен Сергей Серёжа Саша Софья Соня Станислав
Степан Таня Тамара Татьяна Тимофей Тимур Федор Фёдор Юлия Юля Юрий Юра Яна Ярослав Ярослава
"""

#: Russian given names and their usual diminutives, to confirm a one-word name that
#: natasha finds where a capital letter proves nothing (the start of a sentence).
RUSSIAN_NAME_STEMS = frozenset(
    name[:-1] if name[-1] in "аяйьо" and len(name) > 3 else name for name in _RUSSIAN.split()
)
